"""Every verb's --help describes every option and shows its default; choices and defaults are
the configs' and the registry's own."""

from __future__ import annotations

import argparse
import re

import pytest

from core.cli import build_parser, run


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flat(text: str) -> str:
    """Help text without its wrapping (argparse wraps at spaces and after hyphens)."""
    return re.sub(r"\s+", "", text)


def test_every_option_of_every_verb_is_described_with_its_default(capsys):
    verbs = _verbs()
    assert {"train", "benchmark", "quantize", "prune", "distill", "tune", "scale", "compare",
            "auto", "run", "profile", "fuse", "factorize", "completion"} <= set(verbs)
    assert run(["train", "--help"]) == 0  # what --help prints is the parser's format_help
    assert capsys.readouterr().out == verbs["train"].format_help()
    for verb, parser in verbs.items():
        shown = _flat(parser.format_help())
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            text = _flat(formatter._expand_help(action)) if action.help else ""
            assert text.strip(), f"studio {verb} {name}: no description"
            assert text in shown, f"studio {verb} {name}: description not in --help"
            if action.default is not None and action.default is not False:
                assert "default" in text.lower(), f"studio {verb} {name}: default not shown"
        for generic in ("--json", "--config"):
            assert generic in shown, (verb, generic)


def test_method_choices_are_the_registry():
    from core.registry import list_methods

    verbs = _verbs()
    for verb, area in (("quantize", "quantization"), ("distill", "distillation")):
        method = next(a for a in verbs[verb]._actions if a.dest == "method")
        assert list(method.choices) == list_methods(area), verb


@pytest.mark.parametrize("verb, config", [
    ("train", "core.training:TrainConfig"), ("distill", "core.distillation:DistillConfig"),
    ("auto", "core.auto:AutoConfig"), ("scale", "core.federated:ScaleConfig"),
    ("factorize", "core.lowrank:LowRankConfig"), ("prune", "core.pruning:PruningConfig"),
])
def test_option_defaults_are_the_config_defaults(verb, config):
    """An option named like a config field defaults to what the config does without it."""
    import dataclasses
    import importlib

    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name for f in dataclasses.fields(cls)}
    plain = cls().to_dict()
    compared = 0
    for action in _verbs()[verb]._actions:
        if action.dest not in fields or action.default is None or action.dest == "seed":
            continue
        if isinstance(plain[action.dest], list):  # a comma-separated option
            value = [type(v)(x) for v, x in zip(plain[action.dest], action.default.split(","))]
            assert value == plain[action.dest], (verb, action.dest)
        else:
            built = cls(**{action.dest: action.default}).to_dict()[action.dest]
            assert built == plain[action.dest], (verb, action.dest)
        compared += 1
    assert compared >= 3, verb


def test_completion_prints_a_script(capsys):
    pytest.importorskip("argcomplete")
    assert run(["completion", "bash"]) == 0
    assert "complete" in capsys.readouterr().out
