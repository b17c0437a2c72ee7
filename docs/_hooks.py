"""MkDocs hooks: pages generated at build time from their one source, never copied by hand.

- ``cli.md``: every verb's ``--help``, from ``core.cli.build_parser()``;
- ``rest-api.md`` (+ ``openapi.json``): the REST API's OpenAPI schema, from ``studio.api``;
- ``security.md`` and ``measurement.md``: the README's sections of those names.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# README section -> (page, title, intro). The README stays the one place this text lives.
README_PAGES = {
    "Security": ("security.md", "Trust and security",
                 "The trust model every interface follows (UI, REST API, CLI, Python API). "
                 "This page is the README's *Security* section, included at build time."),
    "How things are measured": ("measurement.md", "How things are measured",
                                "The measurement protocol behind every figure the studio "
                                "reports. This page is the README's section of the same "
                                "name, included at build time; a runnable example follows."),
}


def _verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def cli_markdown() -> str:
    """The CLI reference: the top-level help, then each verb's ``--help``."""
    from core.cli import build_parser

    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help at this width
    parser = build_parser()
    parts = ["# CLI reference\n",
             "Generated from the parsers at build time (`studio VERB --help` prints the "
             "same). Every verb also takes `--json` and `--config FILE.yaml`; see "
             "[Getting started](index.md#the-command-line).\n",
             "```text\n" + parser.format_help() + "```\n"]
    for verb, sub in _verb_parsers(parser).items():
        parts.append(f"## studio {verb}\n\n```text\n{sub.format_help()}```\n")
    return "\n".join(parts)


def openapi_schema() -> dict[str, Any]:
    """The REST API's OpenAPI schema (the app built on a throw-away root)."""
    from studio.api import create_api

    with tempfile.TemporaryDirectory(prefix="studio-docs-") as root:
        return create_api(root).openapi()


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "anyOf" in schema:  # e.g. an optional header: string or null
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else schema.get("type", "")


def _operation_markdown(path: str, method: str, op: dict[str, Any]) -> str:
    lines = [f"### `{method.upper()} {path}`\n", op.get("summary", ""), ""]
    if op.get("description"):
        lines += [op["description"].strip(), ""]
    params = op.get("parameters") or []
    if params:
        lines += ["| parameter | in | required | type |", "|---|---|---|---|"]
        lines += [f"| `{p['name']}` | {p['in']} | {p.get('required', False)} | "
                  f"{_schema_name(p.get('schema'))} |" for p in params]
        lines.append("")
    body = (op.get("requestBody") or {}).get("content") or {}
    for mime, spec in body.items():
        lines.append(f"Body (`{mime}`): {_schema_name(spec.get('schema')) or 'see schema'}")
        lines.append("")
    codes = ", ".join(f"`{code}`" for code in (op.get("responses") or {}))
    lines += [f"Responses: {codes}", ""]
    return "\n".join(lines)


def rest_markdown(schema: dict[str, Any]) -> str:
    """The REST API page: each route from the OpenAPI schema, and the schema itself."""
    info = schema.get("info", {})
    parts = ["# REST API\n",
             f"{info.get('description', '')}\n",
             "Generated at build time from the app's OpenAPI schema "
             "([openapi.json](openapi.json)); a running server serves the same schema at "
             "`/api/openapi.json` and interactive docs at `/api/docs`.\n"]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(_operation_markdown(path, method, op))
    models = schema.get("components", {}).get("schemas", {})
    if models:
        parts.append("## Schemas\n")
        for name, spec in models.items():
            parts.append(f"### {name}\n\n```json\n{json.dumps(spec, indent=2)}\n```\n")
    return "\n".join(parts)


def readme_section(title: str) -> str:
    """A ``## title`` section of the README (its subsections too), headings lifted one level."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        raise ValueError(f"README.md has no '## {title}' section")
    return re.sub(r"^###", "##", match.group(1), flags=re.M)


def readme_page(section: str) -> str:
    page, title, intro = README_PAGES[section]
    body = readme_section(section)
    extra = ROOT / "docs" / f"_{page}"  # a hand-written tail (e.g. runnable examples)
    tail = extra.read_text() if extra.is_file() else ""
    return f"# {title}\n\n{intro}\n\n{body}\n{tail}"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages (mkdocs >= 1.6: File.generated)."""
    from mkdocs.structure.files import File

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    schema = openapi_schema()
    generated = {"cli.md": cli_markdown(), "rest-api.md": rest_markdown(schema),
                 "openapi.json": json.dumps(schema, indent=2)}
    generated.update({page: readme_page(section)
                      for section, (page, _, _) in README_PAGES.items()})
    for name, content in generated.items():
        files.append(File.generated(config, name, content=content))
    return files
