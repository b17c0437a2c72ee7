"""Uploads: size-limited, typed by content, stored under generated names (never user paths)."""

from __future__ import annotations

import codecs
import secrets
import shutil
import zipfile
from pathlib import Path

from core.artifacts import detect_format
from core.errors import DataError, ModelFileError

MODEL_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}


def _check_size(path: Path, limit_mb: float) -> None:
    size = path.stat().st_size
    if size > limit_mb * 2**20:
        raise ModelFileError(f"The file is {size / 2**20:.1f} MB; the limit is {limit_mb:.0f} MB.")
    if size == 0:
        raise ModelFileError("The file is empty.")


def store_model_upload(src: str | Path, dest_dir: Path, *, limit_mb: float = 200) -> Path:
    """Copy an uploaded model into ``dest_dir`` under a generated name, after checking it."""
    src = Path(src)
    _check_size(src, limit_mb)
    fmt = detect_format(src)  # refuses pickles and unknown content
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"model-{secrets.token_hex(6)}{MODEL_SUFFIX[fmt]}"
    shutil.copyfile(src, dest)
    return dest


def store_data_upload(src: str | Path, dest_dir: Path, *, limit_mb: float = 200) -> Path:
    """Copy an uploaded .csv/.npz into ``dest_dir``; the type is judged by content."""
    src = Path(src)
    _check_size(src, limit_mb)
    if zipfile.is_zipfile(src):
        suffix = ".npz"
    else:
        head = src.read_bytes()[:4096]
        if b"\x00" in head:
            raise DataError("The data file is neither a CSV (text) nor an .npz archive.")
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            raise DataError("The CSV file is not UTF-8 text.") from None
        suffix = ".csv"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"data-{secrets.token_hex(6)}{suffix}"
    shutil.copyfile(src, dest)
    return dest
