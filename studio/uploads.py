"""Uploads: size-limited, typed by content, stored under generated names (never user paths)."""

from __future__ import annotations

import codecs
import contextlib
import re
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from core.artifacts import UntrustedModelError, check_onnx, detect_format, server_allows_model_code
from core.artifacts._inspect import check_pt2_file
from core.artifacts._trust import untrusted_message
from core.data import npz_headers
from core.errors import DataError, InvalidParameterError, ModelFileError, StudioError

MODEL_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}


def _check_size(path: Path, limit_mb: float) -> None:
    size = path.stat().st_size
    if size > limit_mb * 2**20:
        raise ModelFileError(f"The file is {size / 2**20:.1f} MB; the limit is {limit_mb:.0f} MB.")
    if size == 0:
        raise ModelFileError("The file is empty.")


def store_model_upload(src: str | Path, dest_dir: Path, *, limit_mb: float = 200) -> Path:
    """Copy an uploaded model into ``dest_dir`` under a generated name, after checking it.

    Uploads are data: ONNX only (checked here, sizes before allocation); TorchScript and .pt2
    run code when loaded and are refused unless the operator set STUDIO_ALLOW_MODEL_CODE=1
    (never on a Space). A rejected file is deleted from Gradio's upload cache at once.
    """
    return _store(Path(src), dest_dir, "model", lambda p: MODEL_SUFFIX[_model_format(p)],
                  limit_mb=limit_mb)


def _model_format(src: Path) -> str:
    """The upload's format once it passed the server's checks (see store_model_upload)."""
    fmt = detect_format(src)  # refuses pickles, zip bombs and unknown content
    if fmt == "onnx":
        check_onnx(src)  # declared sizes, external data, validity
    elif not server_allows_model_code():
        raise UntrustedModelError(untrusted_message(src.name, fmt, server=True))
    elif fmt == "export":
        check_pt2_file(src)  # no pickled part, even where model code is allowed
    return fmt


def store_data_upload(src: str | Path, dest_dir: Path, *, limit_mb: float = 200) -> Path:
    """Copy an uploaded .csv/.npz into ``dest_dir``; the type is judged by content. A rejected
    file is deleted from Gradio's upload cache at once (never a file outside it)."""
    return _store(Path(src), dest_dir, "data", _data_suffix, limit_mb=limit_mb)


def _store(src: Path, dest_dir: Path, prefix: str, suffix_of: Callable[[Path], str], *,
           limit_mb: float) -> Path:
    """Check ``src`` (size, then ``suffix_of``, which judges its content and raises a
    StudioError when refused) and copy it to ``dest_dir/<prefix>-<random><suffix>``; a refused
    file is deleted from Gradio's upload cache."""
    try:
        _check_size(src, limit_mb)
        suffix = suffix_of(src)
    except StudioError:
        drop_rejected(src)
        raise
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{prefix}-{secrets.token_hex(6)}{suffix}"
    shutil.copyfile(src, dest)
    return dest


def _data_suffix(src: Path) -> str:
    """``.npz`` for a zip archive, ``.csv`` for UTF-8 text; anything else is refused."""
    if zipfile.is_zipfile(src):
        npz_headers(src)  # declared sizes against the limits: a bomb is refused at upload
        return ".npz"
    with src.open("rb") as f:
        head = f.read(4096)
    if b"\x00" in head:
        raise DataError("The data file is neither a CSV (text) nor an .npz archive.")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise DataError("The CSV file is not UTF-8 text.") from None
    return ".csv"


def drop_rejected(src: str | Path) -> None:
    """Delete a rejected upload if it sits in Gradio's upload cache (and its folder if empty)."""
    from gradio.utils import get_upload_folder

    path = Path(src).resolve()
    cache = Path(get_upload_folder()).resolve()
    if cache in path.parents and path.is_file():
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty


UPLOAD_KINDS = ("model", "data")


def upload_name(filename: str | None) -> str:
    """A client's file name made safe to show and to use as one path part (never a path)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(filename or "upload")).name).lstrip(".")
    return name[-80:] or "upload"


@dataclass(frozen=True)
class IncomingUpload:
    """A received REST upload (its bytes, within the limit) waiting for its check."""

    kind: str
    path: Path
    folder: Path
    size: int
    limit_mb: float

    def check(self, callbacks: Any = None) -> str:
        """Check and store it as a UI upload is (by content, pickles refused); returns the
        stored file's name. Run it where a native crash cannot hurt (a job's child)."""
        store = store_model_upload if self.kind == "model" else store_data_upload
        stored = store(self.path, self.folder, limit_mb=self.limit_mb)
        shutil.rmtree(self.path.parent, ignore_errors=True)
        return stored.name

    def discard(self) -> None:
        """Delete everything this upload left (a rejected upload leaves nothing)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def receive_upload(stream: BinaryIO, kind: str, folder: Path, *, limit_mb: float = 200,
                   filename: str | None = None) -> IncomingUpload:
    """Write a REST upload read from ``stream`` into ``folder`` (a fresh folder of its own).

    At most ``limit_mb`` (+1 byte) is ever read or written; past it, or for an unknown
    ``kind``, nothing is left and a StudioError says why. Then call ``check()``.
    """
    if kind not in UPLOAD_KINDS:
        raise InvalidParameterError("kind", f"one of {list(UPLOAD_KINDS)}", kind)
    limit = int(limit_mb * 2**20)
    path = folder / ".incoming" / upload_name(filename)
    path.parent.mkdir(parents=True, exist_ok=False)
    try:
        with path.open("wb") as out:
            size = _copy_at_most(stream, out, limit + 1)
        if size > limit:
            raise (ModelFileError if kind == "model" else DataError)(
                f"The file is over the upload limit of {limit_mb:g} MB.")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return IncomingUpload(kind, path, folder, size, limit_mb)


def _copy_at_most(src: BinaryIO, dst: BinaryIO, limit: int, chunk: int = 2**20) -> int:
    """Copy until EOF or ``limit`` bytes; returns the bytes copied."""
    copied = 0
    while copied < limit:
        block = src.read(min(chunk, limit - copied))
        if not block:
            break
        dst.write(block)
        copied += len(block)
    return copied
