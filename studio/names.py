"""Friendly names for variants, derived from their report.json ("CNN on digits",
"INT8 (static, entropy)"), and the user's own names (a per-workspace names.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FAMILIES = {"cnn": "CNN", "mlp": "MLP", "vit": "ViT", "resnet": "ResNet", "mobilenet":
            "MobileNet", "lenet": "LeNet"}
NAMES_FILE = "names.json"


def data_name(report: dict[str, Any]) -> str:
    """The data set's name, never a server path (an upload shows its file stem)."""
    source = str((report.get("data") or {}).get("source") or "")
    return Path(source).stem if source else ""


def _family(report: dict[str, Any]) -> str:
    model = str((report.get("config") or {}).get("model") or "")
    return FAMILIES.get(model, model.upper() if len(model) <= 4 else model)


def _quantized(method: str, config: dict[str, Any]) -> str:
    kind = next((k for k in ("int8", "int4", "fp16", "bf16") if k in method), method)
    details = [w for w in ("static", "dynamic", "qat") if w in method]
    if "static" in method or "qat" in method:
        details.append(str(config.get("calibration") or "minmax"))
    if method.startswith("torch"):
        details.append("torch")
    return kind.upper() + (f" ({', '.join(details)})" if details else "")


def friendly_name(report: dict[str, Any]) -> str:
    """A short name a person reads: what the variant is, from its report."""
    op, method = report.get("operation"), str(report.get("method") or "")
    config = report.get("config") or {}
    data = data_name(report)
    if op == "train":
        return f"{_family(report)} on {data}" if data else _family(report)
    if op == "benchmark":
        name = Path(str(config.get("model") or "model")).name
        return f"Uploaded {name}" + (f" on {data}" if data else "")
    if op == "quantize":
        return _quantized(method, config)
    if op == "prune":
        sparsity = config.get("sparsity")
        pct = f" {100 * sparsity:.0f} %" if isinstance(sparsity, (int, float)) else ""
        return f"Pruned{pct} ({method})"
    if op == "distill":
        width = config.get("width")
        size = f" ×{width:g}" if isinstance(width, (int, float)) else ""
        return f"Student{size} ({method})"
    if op == "tune":
        return f"Tuned trial {config.get('trial', '?')}"
    if op == "auto":
        winner = (report.get("auto") or {}).get("winner")
        return f"Auto winner: {winner}" if winner else "Auto winner"
    if op == "scale":
        return "Federated MLP (synthetic data)" if not report.get("parent") else \
            f"Federated {method}"
    if op == "recipe":
        return f"Recipe {(report.get('recipe') or {}).get('name') or ''}".strip()
    return f"{op} {method}".strip()


def custom_names(session_dir: Path) -> dict[str, str]:
    """The names this workspace gave its variants (run id → name)."""
    try:
        data = json.loads((session_dir / NAMES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


MAX_NAME = 60


def set_custom_name(session_dir: Path, run_id: str, name: str) -> str:
    """Give a variant of this workspace a name of the user's own ("" restores the derived
    one); returns the name kept. Control characters are dropped, the length is bounded."""
    from core.errors import InvalidParameterError

    clean = " ".join("".join(ch if ch.isprintable() else " " for ch in str(name or "")).split())
    if len(clean) > MAX_NAME:
        raise InvalidParameterError("name", f"at most {MAX_NAME} characters", len(clean))
    names = custom_names(session_dir)
    if clean:
        names[run_id] = clean
    else:
        names.pop(run_id, None)
    tmp = session_dir / f".{NAMES_FILE}.tmp"
    tmp.write_text(json.dumps(names, ensure_ascii=False, indent=1))
    tmp.replace(session_dir / NAMES_FILE)
    return clean


def display_name(report: dict[str, Any], run_id: str, names: dict[str, str]) -> str:
    """The user's name for a variant if it has one, else the derived friendly name."""
    return names.get(run_id) or friendly_name(report)
