"""Who may run code stored in a model file: the one place every interface asks.

ONNX and the studio's own bundles (model.json + safetensors / sparse npz) are data and always
load. TorchScript and ``torch.export`` ``.pt2`` files run code when loaded (``__setstate__``,
symbolic shape expressions), so they load only with an explicit opt-in:
``load_model(path, trust_model=True)``, ``with trusted_model_code():`` (what the CLI's
``--trust-model`` uses), or, for a single-user server, ``STUDIO_ALLOW_MODEL_CODE=1`` (ignored
on a Hugging Face Space). TorchScript/.pt2 files that the studio wrote itself from data-only
inputs are recorded (by digest) and load without the opt-in.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from pathlib import Path
from typing import Iterator

from core.errors import ModelFileError

ALLOW_ENV = "STUDIO_ALLOW_MODEL_CODE"
CODE_FORMATS = {"torchscript": "TorchScript", "export": "torch.export (.pt2)"}

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("studio_trust_model",
                                                              default=False)


class UntrustedModelError(ModelFileError):
    """A TorchScript/.pt2 model was given without the opt-in to run its code."""


@contextlib.contextmanager
def trusted_model_code(enabled: bool = True) -> Iterator[None]:
    """Inside this block, ``load_model`` (and every verb) may load TorchScript and .pt2."""
    token = _TRUST.set(enabled)
    try:
        yield
    finally:
        _TRUST.reset(token)


def server_allows_model_code() -> bool:
    """The operator's opt-in (``STUDIO_ALLOW_MODEL_CODE=1``); always off on a Space."""
    if os.environ.get("SPACE_ID"):
        return False
    return os.environ.get(ALLOW_ENV, "").strip().lower() in {"1", "true", "yes"}


def model_code_trusted() -> bool:
    """Whether TorchScript/.pt2 files may be loaded here and now."""
    return _TRUST.get() or server_allows_model_code()


def untrusted_message(name: str, fmt: str, *, server: bool = False) -> str:
    """The refusal: why, how to export to ONNX, and the opt-in's name."""
    what = CODE_FORMATS.get(fmt, fmt)
    export = ("Export it to ONNX instead: torch.onnx.export(model, (x,), 'model.onnx') "
              "(x: one example input batch), and give the .onnx file")
    if server:
        return (f"'{name}' is a {what} model. Loading one runs code stored in the file, so this "
                f"server accepts only ONNX models and studio run folders. {export}. (The "
                f"operator of a single-user local studio can allow such files with "
                f"{ALLOW_ENV}=1.)")
    return (f"'{name}' is a {what} model. Loading one runs code stored in the file, so the "
            f"studio loads it only if you trust it: pass --trust-model (CLI) or "
            f"trust_model=True / `with core.artifacts.trusted_model_code():` (Python). "
            f"{export}.")


def check_model_code_allowed(path: Path, fmt: str, *, trust_model: bool = False) -> None:
    """Raise UntrustedModelError unless a TorchScript/.pt2 file may be loaded."""
    if fmt not in CODE_FORMATS or trust_model or model_code_trusted() or is_studio_made(path):
        return
    raise UntrustedModelError(untrusted_message(path.name, fmt))


# --- The studio's own TorchScript/.pt2 files: their digests, kept where only the studio writes --

STORE_ENV = "STUDIO_TRUST_STORE"
_MADE: set[str] = set()  # this process's (and its forks') own files, if the store is unwritable


def _store() -> Path:
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optimization-studio" / "made"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_studio_made(paths: list[Path] | tuple[Path, ...]) -> None:
    """Remember the .pt/.pt2 files the studio just wrote where no model code was trusted (so
    none of a given file's code can be in them).

    A copy with the same bytes is recognised anywhere; the store lives in this user's cache
    (never under a served folder), so a file given to the studio cannot claim to be its own.
    """
    if model_code_trusted():
        return
    for path in map(Path, paths):
        if path.suffix not in {".pt", ".pt2"} or not path.is_file():
            continue
        sha = _sha256(path)
        _MADE.add(sha)
        try:
            _store().mkdir(parents=True, exist_ok=True)
            (_store() / sha).touch()
        except OSError:
            pass  # then only this process and its forks know it


def is_studio_made(path: Path) -> bool:
    """Whether the studio wrote these exact bytes itself (from data-only inputs)."""
    sha = _sha256(Path(path))
    return sha in _MADE or (_store() / sha).is_file()
