"""Model files checked before anything is allocated or unpickled.

Zip archives (TorchScript, .pt2): declared member sizes and compression ratios. ``.pt2``: every
member is one that ``torch.export.save`` writes, no part needs pickle (weights/constants marked
``use_pickle``, custom objects, AOTInductor code), sample inputs load with ``weights_only=True``,
graph targets are operators and symbolic shape expressions are plain sympy (``torch.export``
evaluates them). ONNX: declared input dims, initializer and external-data sizes, and external
data beside the file only.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from core.errors import ModelFileError
from core.limits import check_limit

MAX_RATIO = 1000  # deflate tops out near 1032:1, so a higher declared ratio is a forged header


def _mb(n_bytes: float) -> float:
    return n_bytes / 2**20


def check_zip_members(zf: zipfile.ZipFile, name: str) -> None:
    """Refuse an archive whose declared sizes are over the limit, whose names escape, or that
    holds two members of one name (Python's zipfile, which the checks read, and torch's
    reader, which loads, do not always pick the same one; torch's reader does not tell
    upper from lower case: 'DATA.PKL' stood in for a checked 'data.pkl')."""
    total, seen = 0, {}
    for info in zf.infolist():
        member = info.filename
        if member.startswith("/") or ".." in member.split("/") or "\\" in member:
            raise ModelFileError(f"'{name}' holds a member with an unsafe path ({member!r}).")
        if member.lower() in seen:
            same = seen[member.lower()]
            raise ModelFileError(f"'{name}' holds two members named {member!r}" + (
                "." if same == member else f" and {same!r} (one name to torch's reader)."))
        seen[member.lower()] = member
        if info.compress_size and info.file_size > 2**20 and \
                info.file_size / info.compress_size > MAX_RATIO:
            raise ModelFileError(f"'{name}' is a compression bomb: member {member!r} declares "
                                 f"{_mb(info.file_size):,.0f} MB from "
                                 f"{info.compress_size:,} bytes.")
        total += info.file_size
    check_limit("model file", _mb(total), "model_mb",
                detail=f"'{name}' unpacks to {_mb(total):,.1f} MB")


# --- torch.export .pt2 --------------------------------------------------------------------

_PT2_MEMBER = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/(weight_\d+|model_weights_config\.json)"
    r"|data/constants/(tensor_\d+|model_constants_config\.json)|extra/[\w.\-]+)")
_PAYLOAD = re.compile(r"(weight|tensor)_\d+")
# Names a symbolic shape expression may use (sympy's srepr of torch's own functions).
_SYMPY_NAMES = frozenset(
    "Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs Eq Ne Lt Le Gt Ge And Or Not "
    "Piecewise ExprCondPair floor ceiling sqrt oo zoo nan Infinity NegativeInfinity IntInfinity "
    "NegativeIntInfinity int_oo True False true false StrictLessThan LessThan "
    "StrictGreaterThan GreaterThan Equality Unequality BooleanTrue BooleanFalse One Zero "
    "NegativeOne Half FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt "
    "CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv "
    "IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat "
    "Identity positive negative nonnegative nonpositive nonzero zero integer real finite "
    "infinite even odd rational extended_real".split())
_TOKEN = re.compile(r"\s+|'[a-z]{1,8}\d+'|[A-Za-z_]\w*|\d+(\.\d+)?([eE][+-]?\d+)?"
                    r"|[(),=+\-*/%<>!&|~^]")
_TARGET = re.compile(r"(torch\.ops\.[a-z_]\w*|_operator|math)(\.\w+)+")
_BAD_OPS = {"from_file", "load_tensor"}  # operators that read files when the graph runs
_BAD_NAMESPACES = {"debugprims", "profiler"}


def _pickle_refusal(name: str, part: str) -> ModelFileError:
    return ModelFileError(f"'{name}' is refused: its part {part!r} needs pickle, and the studio "
                          "never unpickles a file it is given. Save the model with "
                          "torch.export.save from plain tensors, or export it to ONNX.")


def check_pt2(zf: zipfile.ZipFile, name: str) -> None:
    """Refuse a .pt2 archive that is not plain torch.export data (see the module docstring)."""
    names = zf.namelist()
    prefixes = {n.split("/", 1)[0] for n in names}
    if len(prefixes) != 1 or any("/" not in n for n in names):
        raise ModelFileError(f"'{name}' is not a torch.export archive (one top folder).")
    prefix = prefixes.pop() + "/"
    for member in names:
        inner = member[len(prefix):]
        if not _PT2_MEMBER.fullmatch(inner):
            raise ModelFileError(f"'{name}' is refused: torch.export.save does not write its "
                                 f"part {inner!r} (legacy, pickled or compiled parts are not "
                                 "loaded).")
    if zf.read(prefix + "archive_format").decode(errors="replace").strip() != "pt2":
        raise ModelFileError(f"'{name}' is not a torch.export .pt2 archive.")
    declared = 0
    for folder, config in (("weights", "model_weights_config.json"),
                           ("constants", "model_constants_config.json")):
        member = f"{prefix}data/{folder}/{config}"
        if member in names:
            declared += _check_payload_config(zf.read(member), name, f"data/{folder}/{config}")
    check_limit("model file", _mb(declared), "model_mb",
                detail=f"'{name}' declares {_mb(declared):,.1f} MB of tensors")
    if prefix + "models/model.json" not in names:
        raise ModelFileError(f"'{name}' holds no exported program (models/model.json).")
    _check_program(json.loads(zf.read(prefix + "models/model.json")), name)
    sample = prefix + "data/sample_inputs/model.pt"
    if sample in names:
        _check_sample_inputs(zf.read(sample), name)


def _check_payload_config(raw: bytes, name: str, part: str) -> int:
    """Refuse pickled entries; return the bytes the config's tensors declare."""
    import torch
    from torch._export.serde.serialize import deserialize_scalar_type

    try:
        config = json.loads(raw)["config"]
        entries = list(config.items())
    except (ValueError, KeyError, AttributeError):
        raise ModelFileError(f"'{name}' has a damaged {part}.") from None
    total = 0
    for fqn, meta in entries:
        if not isinstance(meta, dict) or meta.get("use_pickle") or \
                not _PAYLOAD.fullmatch(str(meta.get("path_name", ""))):
            raise _pickle_refusal(name, f"{part}: {fqn}")
        try:
            tm = meta["tensor_meta"]
            numel = math.prod(int(s["as_int"]) for s in tm["sizes"])
            total += numel * torch._utils._element_size(deserialize_scalar_type(tm["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"'{name}' is refused: {part} entry {fqn!r} has no plain "
                                 "tensor shape (symbolic or pickled weights are not loaded).")
    return total


def _walk(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def _check_program(program: Any, name: str) -> None:
    """Graph targets must be operators; shape expressions plain sympy (they are evaluated)."""
    for key, value in _walk(program):
        if key == "expr_str" and not _safe_expr(str(value)):
            raise ModelFileError(f"'{name}' is refused: a symbolic shape expression is not "
                                 f"plain sympy ({str(value)[:60]!r}).")
        if key == "target" and isinstance(value, str) and not _safe_target(value):
            raise ModelFileError(f"'{name}' is refused: its graph calls {value[:80]!r}, "
                                 "which is not an operator the studio runs.")


def _safe_expr(expr: str) -> bool:
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            return False
        token = match.group(0)
        if (token[0].isalpha() or token[0] == "_") and token not in _SYMPY_NAMES:
            return False
        pos = match.end()
    return True


def _safe_target(target: str) -> bool:
    if not _TARGET.fullmatch(target):
        return False
    parts = target.split(".")
    return not (_BAD_OPS & set(parts) or (len(parts) > 2 and parts[2] in _BAD_NAMESPACES))


def _check_sample_inputs(raw: bytes, name: str) -> None:
    import torch

    try:
        torch.load(io.BytesIO(raw), weights_only=True)
    except Exception:
        raise _pickle_refusal(name, "data/sample_inputs/model.pt") from None


def check_pt2_file(path: Path) -> None:
    """check_pt2 on a file (e.g. an upload, before it is stored)."""
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_members(zf, path.name)
            check_pt2(zf, path.name)
    except (zipfile.BadZipFile, ValueError, KeyError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"'{path.name}' is a damaged torch.export archive.") from None


def _register_operator_libraries(zf: zipfile.ZipFile) -> None:
    """Define the operator namespaces a checked graph calls that torch does not load itself."""
    program = next(n for n in zf.namelist() if n.endswith("models/model.json"))
    if b"torch.ops.quantized_decomposed." in zf.read(program):
        # The quantize/dequantize operators of PT2E INT8 graphs. torch itself defines this
        # operator library (Library("quantized_decomposed", "DEF")) in this module; torchao
        # 0.18 has no public module of its own that defines it (its pt2e modules and
        # inductor import this same one), and importing torchao costs ~15 s here. So this
        # is an operator registration, not the deprecated torch.ao quantization flow.
        import torch.ao.quantization.fx._decomposed  # noqa: F401


def load_pt2_safely(path: Path) -> Any:
    """``torch.export`` program from a checked .pt2, read once into memory (no re-read race)."""
    from torch.export.pt2_archive._package import load_pt2

    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_zip_members(zf, path.name)
            check_pt2(zf, path.name)
            _register_operator_libraries(zf)
        # load_pt2, not torch.export.load: that falls back to a legacy reader that unpickles.
        contents = load_pt2(io.BytesIO(data))
    except ModelFileError:
        raise
    except Exception as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFileError(f"'{path.name}' could not be loaded as torch.export: {why}") from None
    if "model" not in contents.exported_programs:
        raise ModelFileError(f"'{path.name}' holds no exported program named 'model'.")
    return contents.exported_programs["model"]


# --- ONNX ---------------------------------------------------------------------------------


def check_onnx_declared(model: Any, path: Path) -> None:
    """Refuse huge declared inputs or tensors before any of them is read or allocated.

    ``model`` is the graph loaded with ``load_external_data=False``; where external data lies
    is checked by ``_onnx.external_data_files`` (beside the file only). A sparse tensor counts
    at its dense size too (ONNX Runtime makes it dense when it loads the model).
    """
    from onnx.external_data_helper import uses_external_data

    from core.artifacts._onnx import all_tensors, operator_nodes, sparse_tensors

    name = path.name
    nodes = operator_nodes(model, name)
    check_limit("model file", nodes, "model_nodes",
                detail=f"'{name}' holds {nodes:,} operator nodes (with its local functions "
                       "inlined, as ONNX Runtime does)")
    for inp in model.graph.input:
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]  # after the batch
        values = math.prod(d for d in dims if d > 0)
        check_limit("model input", values, "model_input",
                    detail=f"'{name}' declares input {inp.name!r} of {values:,} values per "
                           "sample", value=dims)
    tensors = list(all_tensors(model))
    total = sum(_declared_bytes(t, t.dims, t.data_type, name) for t in tensors)
    total += sum(_declared_bytes(s.values, s.dims, s.values.data_type, name)
                 for s in sparse_tensors(model))
    check_limit("model file", _mb(total), "model_mb",
                detail=f"'{name}' declares {_mb(total):,.1f} MB of weights")
    for tensor in filter(uses_external_data, tensors):
        _check_external_range(tensor, path)


def _declared_bytes(tensor: Any, dims: Any, data_type: int, name: str) -> int:
    """Bytes a tensor of ``dims`` and ``data_type`` holds; a negative dimension is refused
    (it would hide another tensor's size from the total)."""
    from onnx import TensorProto, helper

    if any(d < 0 for d in dims):
        raise ModelFileError(f"'{name}' is refused: tensor {tensor.name!r} declares a negative "
                             f"dimension {list(dims)}.")
    itemsize = 1 if data_type in (TensorProto.STRING, TensorProto.UNDEFINED) else \
        helper.tensor_dtype_to_np_dtype(data_type).itemsize
    return math.prod(dims) * itemsize


def _check_external_range(tensor: Any, path: Path) -> None:
    """An external tensor's bytes lie inside its data file (offset + length, the length its
    dims declare where it gives none)."""
    info = {e.key: e.value for e in tensor.external_data}
    target = path.resolve().parent / info.get("location", "")
    try:
        length = int(info.get("length") or 0) or \
            _declared_bytes(tensor, tensor.dims, tensor.data_type, path.name)
        offset = int(info.get("offset") or 0)
        size = target.stat().st_size
    except (ValueError, OSError):
        raise ModelFileError(f"'{path.name}' has unreadable external data for tensor "
                             f"{tensor.name!r}.") from None
    if offset < 0 or offset + length > size:
        raise ModelFileError(f"'{path.name}' is refused: tensor {tensor.name!r} reads past the "
                             f"end of its external data file.")
