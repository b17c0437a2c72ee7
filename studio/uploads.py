"""Uploads: size-limited, typed by content, stored under generated names (never user paths)."""

from __future__ import annotations

import codecs
import contextlib
import re
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Callable, Sequence

from core.artifacts import UntrustedModelError, check_onnx, detect_format, server_allows_model_code
from core.artifacts._inspect import check_pt2_file
from core.artifacts._onnx import external_data_locations, move_onnx, read_graph
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


def _check_sizes(files: list[Path], limit_mb: float) -> None:
    """Each file non-empty, all of them together within the upload limit (read from stat)."""
    if not files:
        raise ModelFileError("No model file was given.")
    if len(files) == 1:
        return _check_size(files[0], limit_mb)
    names = [p.name for p in files]
    if len(set(names)) < len(names):
        raise ModelFileError(f"Two of the uploaded files have the same name ({names}).")
    empty = [p.name for p in files if p.stat().st_size == 0]
    if empty:
        raise ModelFileError(f"'{empty[0]}' is empty.")
    total = sum(p.stat().st_size for p in files)
    if total > limit_mb * 2**20:
        raise ModelFileError(f"The files ({', '.join(names)}) are {total / 2**20:.1f} MB "
                             f"together; the upload limit is {limit_mb:.0f} MB.")


def store_model_upload(src: str | Path | Sequence[str | Path], dest_dir: Path, *,
                       limit_mb: float = 200) -> Path:
    """Copy an uploaded model into ``dest_dir`` under a generated name, after checking it.

    ``src``: the model file, or an ONNX graph with the external-data files it names
    (``model.onnx`` + ``model.onnx.data``, as torch.onnx.export writes), in any order.
    Uploads are data: ONNX only (checked here, sizes before allocation); TorchScript and .pt2
    run code when loaded and are refused unless the operator set STUDIO_ALLOW_MODEL_CODE=1
    (never on a Space). Rejected files are deleted from Gradio's upload cache at once.
    """
    files = [Path(src)] if isinstance(src, (str, Path)) else [Path(s) for s in src]
    try:
        _check_sizes(files, limit_mb)
        graph, fmt = _model_among(files)
        others = [p for p in files if p != graph]
        if fmt == "onnx":
            return _store_onnx(graph, others, dest_dir)
        if others:
            raise ModelFileError(f"'{graph.name}' is not an ONNX model; only an ONNX model "
                                 "comes with data files (here: "
                                 f"{', '.join(p.name for p in others)}).")
    except StudioError:
        for path in files:
            drop_rejected(path)
        raise
    return _copy_new(graph, dest_dir, "model", MODEL_SUFFIX[fmt])


def _model_among(files: list[Path]) -> tuple[Path, str]:
    """The model file among ``files`` and its format, judged by content (files named like a
    model are looked at first, smallest first, so a large data file is rarely parsed)."""
    ordered = sorted(files, key=lambda p: (p.suffix.lower() not in MODEL_SUFFIX.values(),
                                           p.stat().st_size))
    first: ModelFileError | None = None
    for path in ordered:
        try:
            return path, _model_format(path)
        except UntrustedModelError:
            raise
        except ModelFileError as exc:
            first = first or exc
    assert first is not None
    raise first


def _model_format(src: Path) -> str:
    """The upload's format once it passed the server's checks (an ONNX graph is checked later,
    beside its data files: see _store_onnx)."""
    fmt = detect_format(src)  # refuses pickles, zip bombs and unknown content
    if fmt == "onnx":
        return fmt
    if not server_allows_model_code():
        raise UntrustedModelError(untrusted_message(src.name, fmt, server=True))
    if fmt == "export":
        check_pt2_file(src)  # no pickled part, even where model code is allowed
    return fmt


def _store_onnx(graph: Path, others: list[Path], dest_dir: Path) -> Path:
    """Put the graph and its data files side by side (under the names the graph declares,
    in a staging folder of our own), check them together with check_onnx, then move them to
    ``dest_dir/model-<random>.onnx`` (+ ``.onnx.data``)."""
    name = upload_name(graph.name)
    data = _data_files_named(graph, name, others)
    staging = dest_dir / f".staging-{secrets.token_hex(6)}"
    staging.mkdir(parents=True)
    try:
        staged = staging / name
        shutil.copyfile(graph, staged)
        for location, path in data.items():
            shutil.copyfile(path, staging / location)
        check_onnx(staged)  # declared sizes against the files, validity; nothing loaded
        dest = dest_dir / f"model-{secrets.token_hex(6)}.onnx"
        if data:
            move_onnx(staged, dest)  # the data file becomes <dest name>.data beside it
        else:
            staged.replace(dest)
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _data_files_named(graph: Path, name: str, others: list[Path]) -> dict[str, Path]:
    """Each external-data location the graph declares, and the uploaded file of that (base)
    name; refused: a location that is not a plain file name, a missing or an unnamed file."""
    locations = external_data_locations(read_graph(graph))
    bad = [loc for loc in locations if not _plain_name(loc)]
    if bad:
        raise ModelFileError(f"'{graph.name}' keeps weights in '{bad[0][:80]}', which is not a "
                             "plain file name beside it; the studio takes external data only "
                             "from files beside the model (no folders, '..' or absolute "
                             "paths).")
    if any(upload_name(loc) == name for loc in locations):
        raise ModelFileError(f"'{graph.name}' names itself as its external-data file.")
    given = {upload_name(p.name): p for p in others}
    wanted = {upload_name(loc): loc for loc in locations}
    missing = sorted(wanted[n] for n in wanted.keys() - given.keys())
    unnamed = sorted(given.keys() - wanted.keys())
    if missing or unnamed:
        raise ModelFileError(_pair_message(graph.name, sorted(locations), missing, unnamed))
    return {loc: given[upload_name(loc)] for loc in locations}


def _pair_message(graph: str, locations: list[str], missing: list[str],
                  unnamed: list[str]) -> str:
    """One refusal naming the base names: the data files missing, the files not named."""
    def quoted(names: list[str]) -> str:
        return ", ".join(f"'{n}'" for n in names)

    parts = []
    if missing:
        parts.append(f"'{graph}' keeps its weights in {quoted(missing)}, which "
                     f"{'was' if len(missing) == 1 else 'were'} not uploaded with it")
    if unnamed:
        parts.append(f"{quoted(unnamed)} {'is' if len(unnamed) == 1 else 'are'} not named by "
                     f"'{graph}' (it names {quoted(locations) or 'no data file'})")
    return ("; ".join(parts) + ". Upload the .onnx together with the data file(s) it names, "
            "names unchanged (torch.onnx.export writes model.onnx + model.onnx.data).")


def _plain_name(location: str) -> bool:
    """A file name with no folder part on any system (no '/', '\\', drive, '..')."""
    return (location not in ("", ".", "..") and len(location.encode()) <= 255
            and PurePosixPath(location).name == location
            and PureWindowsPath(location).name == location
            and not any(ord(c) < 32 for c in location))


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
    return _copy_new(src, dest_dir, prefix, suffix)


def _copy_new(src: Path, dest_dir: Path, prefix: str, suffix: str) -> Path:
    """Copy ``src`` to ``dest_dir/<prefix>-<random><suffix>``."""
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
    """A received REST upload (its files' bytes, within the limit) waiting for its check."""

    kind: str
    paths: tuple[Path, ...]
    folder: Path
    size: int
    limit_mb: float

    def check(self, callbacks: Any = None) -> str:
        """Check and store it as a UI upload is (by content, pickles refused; an ONNX graph
        with its external-data files); returns the stored (model or data) file's name. Run it
        where a native crash cannot hurt (a job's child)."""
        if self.kind == "model":
            stored = store_model_upload(self.paths, self.folder, limit_mb=self.limit_mb)
        else:
            stored = store_data_upload(self.paths[0], self.folder, limit_mb=self.limit_mb)
        shutil.rmtree(self.paths[0].parent, ignore_errors=True)
        return stored.name

    def discard(self) -> None:
        """Delete everything this upload left (a rejected upload leaves nothing)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def receive_upload(parts: BinaryIO | Sequence[tuple[BinaryIO, str | None]], kind: str,
                   folder: Path, *, limit_mb: float = 200,
                   filename: str | None = None) -> IncomingUpload:
    """Write a REST upload into ``folder`` (a fresh folder of its own): one stream (named
    ``filename``), or several ``(stream, filename)`` parts: an ONNX model's graph and its
    external-data files, stored side by side under their (safe) names.

    At most ``limit_mb`` (+1 byte) is ever read or written for all files together; past it,
    for an unknown ``kind``, a data upload of several files or two files of the same name,
    nothing is left and a StudioError says why. Then call ``check()``.
    """
    parts = [(parts, filename)] if hasattr(parts, "read") else list(parts)
    if kind not in UPLOAD_KINDS:
        raise InvalidParameterError("kind", f"one of {list(UPLOAD_KINDS)}", kind)
    error = ModelFileError if kind == "model" else DataError
    names = [upload_name(name) for _, name in parts]
    if kind == "data" and len(parts) != 1:
        raise DataError(f"A data upload is one .csv or .npz file; {len(parts)} were sent.")
    if len(set(names)) < len(names):
        raise error(f"Two of the uploaded files are named the same ({', '.join(names)}).")
    incoming = folder / ".incoming"
    incoming.mkdir(parents=True, exist_ok=False)
    limit, size = int(limit_mb * 2**20), 0
    try:
        for (stream, _), name in zip(parts, names):
            with (incoming / name).open("wb") as out:
                size += _copy_at_most(stream, out, limit + 1 - size)
            if size > limit:
                what = "file is" if len(parts) == 1 else "files are together"
                raise error(f"The {what} over the upload limit of {limit_mb:g} MB.")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return IncomingUpload(kind, tuple(incoming / n for n in names), folder, size, limit_mb)


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
