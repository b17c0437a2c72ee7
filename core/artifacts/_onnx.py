"""ONNX models as users bring them: external-data files, fixed batch dimensions, several outputs.

One definition of an ONNX model's size: the graph file plus every external-data file it
references (``onnx_files``). One rule for which output holds the class scores
(``scores_output``), used by every session that evaluates or calibrates.
"""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.errors import ModelFileError, UnsupportedModelError, without_paths

# Output names that hold class scores, best first (torch exports, sklearn-onnx, Keras…).
SCORE_NAMES = ("logits", "probabilities", "probability", "probs", "scores", "output", "outputs")
# Float outputs ONNX Runtime's Python API returns as numpy (it cannot return bfloat16).
_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
_BF16_HINT = (" ONNX Runtime's Python API cannot return a bfloat16 output: cast the scores to "
              "float32 in the graph (a Cast node), or export the model in float32.")


def _graph(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False)


_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("onnx_reads",
                                                                     default=None)
_SHARED_MAX = 4  # parses kept at once (the input, the result, their external-data forms)


@contextlib.contextmanager
def shared_onnx_reads() -> Iterator[None]:
    """Inside this block ``read_graph`` parses each file once (a verb reads the same file in
    many places: format, counts, MACs, precision, evidence; a ResNet-18's 45 MB parse costs
    ~30 ms of CPU each time); nothing is kept after it (a server holds no parsed model)."""
    token = _SHARED.set(_SHARED.get() if _SHARED.get() is not None else {})
    try:
        yield
    finally:
        _SHARED.reset(token)


def read_graph(path: str | Path, *, external_data: bool = False) -> Any:
    """An ONNX file parsed, READ-ONLY (copy it before changing it): shared with every other
    read of the same unchanged file (path, size, modification time) inside
    ``shared_onnx_reads``, else parsed afresh."""
    import onnx

    p = Path(path).resolve()
    cache = _SHARED.get()
    if cache is None:
        return onnx.load(str(p), load_external_data=external_data)
    st = p.stat()
    key = (str(p), st.st_mtime_ns, st.st_size, external_data)
    if key not in cache:
        if len(cache) >= _SHARED_MAX:  # bounded: a per-layer search writes many attempts
            cache.pop(next(iter(cache)))
        cache[key] = onnx.load(str(p), load_external_data=external_data)
    return cache[key]


def external_data_files(path: str | Path, model: Any = None) -> list[Path]:
    """The external-data files an ONNX graph references, which must lie beside it."""
    path = Path(path)
    model = model if model is not None else read_graph(path)
    base = path.parent.resolve()
    found: dict[str, Path] = {}
    for location in sorted(external_data_locations(model)):
        target = (base / location).resolve()
        if target.parent != base:
            raise ModelFileError(f"'{path.name}' keeps weights in '{location}', outside its own "
                                 "folder; external data must lie beside the model file.")
        if not target.is_file():
            raise ModelFileError(f"'{path.name}' keeps its weights in '{location}', which is "
                                 "missing: put that file beside the model (torch.onnx.export "
                                 "writes both).")
        found.setdefault(location, target)
    return list(found.values())


def external_data_locations(model: Any) -> set[str]:
    """The external-data locations a parsed ONNX graph declares (no data is read)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    return {ExternalDataInfo(t).location for t in all_tensors(model) if uses_external_data(t)}


def graphs(model: Any) -> Iterator[Any]:
    """The main graph, every subgraph (If/Loop/Scan bodies, at any depth) and every local
    function, whatever an attribute's declared type says."""
    todo = [model.graph, *model.functions]
    while todo:
        graph = todo.pop()
        yield graph
        for attr in _attributes(graph):
            todo.extend([attr.g] if attr.HasField("g") else [])
            todo.extend(attr.graphs)


def _attributes(graph: Any) -> Iterator[Any]:
    """The attributes of a graph's nodes (not of its subgraphs' nodes)."""
    for node in graph.node:
        yield from node.attribute


def operator_nodes(model: Any, name: str, cap: int = 10**12) -> int:
    """Operator nodes ONNX Runtime holds once it has inlined the local functions: each call
    counts as the nodes of the function it calls, at any depth (a 1.3 KB file of 16 functions,
    each calling the next twice, is 32,768 nodes: 21 s to load here), subgraphs included;
    at least every node written. Counts stop at ``cap``; a function calling itself is refused
    (``name``: the file's)."""
    from graphlib import CycleError, TopologicalSorter

    def key(call: Any) -> tuple[str, str, str]:
        return call.domain, getattr(call, "op_type", None) or call.name, \
            getattr(call, "overload", "")

    functions = {key(f): f for f in model.functions}
    calls = {k: {key(n) for n in _all_nodes(f.node)} & functions.keys()
             for k, f in functions.items()}
    try:
        order = list(TopologicalSorter(calls).static_order())  # callees first
    except CycleError as exc:
        raise ModelFileError(f"'{name}' is refused: its local function {exc.args[1][0][1]!r} "
                             "calls itself, so inlining it would not end.") from None
    cost: dict[tuple[str, str, str], int] = {}
    for k in order:
        cost[k] = min(cap, sum(cost.get(key(n), 1) for n in _all_nodes(functions[k].node)))
    inlined = min(cap, sum(cost.get(key(n), 1) for n in _all_nodes(model.graph.node)))
    return max(inlined, sum(len(g.node) for g in graphs(model)))


def _all_nodes(nodes: Any) -> Iterator[Any]:
    """``nodes`` and those of their subgraphs, at any depth."""
    todo = list(nodes)
    while todo:
        node = todo.pop()
        yield node
        for attr in node.attribute:
            todo.extend(attr.g.node if attr.HasField("g") else ())
            for sub in attr.graphs:
                todo.extend(sub.node)


def sparse_tensors(model: Any) -> Iterator[Any]:
    """Every sparse tensor (sparse initializers, Constant ``sparse_value`` attributes)."""
    for graph in graphs(model):
        yield from getattr(graph, "sparse_initializer", ())
        for attr in _attributes(graph):
            yield from [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
            yield from attr.sparse_tensors


def all_tensors(model: Any) -> Iterator[Any]:
    """Every tensor ONNX Runtime reads from the file: initializers, attribute tensors and the
    values and indices of sparse tensors, in every graph. (onnx's own walk skips sparse
    tensors, whose data may lie in external files too.)"""
    for graph in graphs(model):
        yield from getattr(graph, "initializer", ())
        for attr in _attributes(graph):
            yield from [attr.t] if attr.HasField("t") else []
            yield from attr.tensors
    for sparse in sparse_tensors(model):
        yield from (sparse.values, sparse.indices)


def onnx_files(path: str | Path) -> list[Path]:
    """The deployable artifact: the graph file and its external-data files."""
    return [Path(path), *external_data_files(path)]


def onnx_size(path: str | Path) -> int:
    """Bytes of the graph file plus its external data (the one definition of its size)."""
    return sum(p.stat().st_size for p in onnx_files(path))


def save_with_external_data(model: Any, out: Path, *, size_threshold: int = 1024) -> None:
    """``onnx.save`` with every initializer of ``size_threshold`` bytes or more in
    ``<out name>.data`` beside ``out``. Hand-written: onnx 1.23's ``save_as_external_data``
    looks for an existing data file in the current folder, not the model's, so a
    ``model.onnx.data`` where the user runs the studio (beside their export) made it fail."""
    import sys

    import onnx
    from onnx.external_data_helper import set_external_data

    location = f"{out.name}.data"
    if (out.parent / location).exists():  # onnx appends to it: never mix two models' data
        raise FileExistsError(f"External data file exists in {location}.")
    for graph in graphs(model):
        for tensor in getattr(graph, "initializer", ()):
            if tensor.HasField("raw_data") and sys.getsizeof(tensor.raw_data) >= size_threshold:
                set_external_data(tensor, location)
    onnx.save(model, str(out))


def copy_onnx(src: str | Path, dst: str | Path) -> list[Path]:
    """Copy an ONNX model to ``dst``; its external data becomes ``<dst name>.data`` beside it.

    Returns the files written (graph first). Offsets inside the data file are unchanged, so
    only the graph's ``location`` fields are rewritten.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = external_data_files(src)
    if not data:
        shutil.copyfile(src, dst)
        return [dst]
    if len(data) > 1:  # several data files: re-save as one (rare; costs a full load)
        save_with_external_data(onnx.load(str(src)), dst)
        return onnx_files(dst)
    model = _graph(src)
    for tensor in all_tensors(model):
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = f"{dst.name}.data"
    onnx.save(model, str(dst))
    shutil.copyfile(data[0], dst.parent / f"{dst.name}.data")
    return [dst, dst.parent / f"{dst.name}.data"]


def strip_debug_metadata(path: str | Path) -> int:
    """Drop per-node debug records (torch's exporter writes each node's Python stack trace
    and module path in ``metadata_props``; quantizers copy them) from an ONNX file in place;
    they are not run. Returns the bytes saved (external data is left as it is)."""
    import onnx

    path = Path(path)
    model = _graph(path)
    nodes = [n for n in model.graph.node if len(n.metadata_props) or n.doc_string]
    if not nodes:
        return 0
    before = path.stat().st_size
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))
    return before - path.stat().st_size


def move_onnx(src: str | Path, dst: str | Path) -> list[Path]:
    """Move an ONNX model (and its external data) to ``dst``; returns the files written."""
    files = copy_onnx(src, dst)
    for p in onnx_files(src):
        p.unlink(missing_ok=True)
    return files


def check_onnx_file(path: str | Path) -> Any:
    """Validate an ONNX file by path (external data and > 2 GB models included); its graph."""
    import onnx

    from core.artifacts._inspect import check_onnx_declared

    path = Path(path)
    model = read_graph(path)
    external_data_files(path, model)
    check_onnx_declared(model, path)  # sizes before the checker reads any tensor
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelFileError(f"'{path.name}' is not a valid ONNX model: "
                             f"{without_paths(str(exc).splitlines()[0])[:200]}") from None
    if len(model.graph.input) - len(_initializer_inputs(model)) != 1:
        raise ModelFileError(f"The studio needs a model with one input; '{path.name}' "
                             f"has {len(model.graph.input)}.")
    _check_float_input(model, path.name)
    return model


# The element types a Predictor feeds (TensorProto FLOAT, FLOAT16, DOUBLE): data are numbers.
_FED_INPUT_TYPES = {1: "float32", 10: "float16", 11: "float64"}


def _check_float_input(model: Any, name: str) -> None:
    """Refuse a model whose input is not a float tensor (token ids, booleans, strings)."""
    from onnx import TensorProto

    inits = _initializer_inputs(model)
    inp = next(i for i in model.graph.input if i.name not in inits)
    elem = inp.type.tensor_type.elem_type
    if elem not in _FED_INPUT_TYPES:
        kind = TensorProto.DataType.Name(elem).lower() if elem else "not a tensor"
        raise UnsupportedModelError(
            f"'{name}' takes input '{inp.name}' of type {kind}; the studio feeds a data set's "
            f"features as floats, so it measures models whose input is "
            f"{', '.join(_FED_INPUT_TYPES.values())}.")


def _initializer_inputs(model: Any) -> set[str]:
    """Graph inputs that are initializers too (old exports list weights as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return {i.name for i in model.graph.input if i.name in inits}


# --- outputs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputInfo:
    """One graph output: its name, ORT type string (``tensor(float)``) and shape."""

    name: str
    type: str
    shape: tuple[Any, ...]


def scores_output(outputs: Sequence[OutputInfo], *, name: str | None = None,
                  num_classes: int | None = None) -> OutputInfo:
    """The output holding class scores: ``name`` if given; else a float output of rank 2:
    the only one whose last dimension is ``num_classes`` (the data's, when known), else one
    named like logits or probabilities. An integer label output is never taken for scores."""
    names = [o.name for o in outputs]
    if name is not None:
        chosen = next((o for o in outputs if o.name == name), None)
        if chosen is None:
            from core.errors import InvalidParameterError

            raise InvalidParameterError("output_name", f"one of the model's outputs {names}",
                                        name)
        if chosen.type not in _FLOAT_TYPES or len(chosen.shape) != 2:
            raise UnsupportedModelError(
                f"Output '{name}' is {chosen.type} of shape {list(chosen.shape)}; the studio "
                "scores a float output of shape [batch, classes]."
                + (_BF16_HINT if chosen.type == "tensor(bfloat16)" else ""))
        return chosen
    scores = score_candidates(outputs)
    exact = [o for o in scores if num_classes and o.shape[-1] == num_classes]
    if len(exact) == 1:
        return exact[0]
    if not scores:
        zipmap = any(o.type.startswith("seq(") for o in outputs)
        raise UnsupportedModelError(
            f"The model has no output of class scores (a float tensor [batch, classes]); its "
            f"outputs are {[(o.name, o.type, list(o.shape)) for o in outputs]}."
            + (" Its probabilities are a sequence of maps (scikit-learn's ZipMap): convert "
               "it with skl2onnx's options={id(model): {'zipmap': False}} to get them as a "
               "[batch, classes] tensor." if zipmap else "")
            + (_BF16_HINT if any(o.type == "tensor(bfloat16)" for o in outputs) else ""))
    for wanted in SCORE_NAMES:
        for o in scores:
            if o.name.lower() == wanted or o.name.lower().startswith(wanted):
                return o
    wide = [o for o in scores if o.shape[-1] != 1]  # a [batch, 1] column: a label, not scores
    return (wide or scores)[0]


def score_candidates(outputs: Sequence[OutputInfo]) -> list[OutputInfo]:
    """The outputs that could hold class scores (float, rank 2)."""
    return [o for o in outputs if o.type in _FLOAT_TYPES and len(o.shape) == 2]


def _dims(dims: Any) -> tuple[Any, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def graph_outputs(model: Any) -> list[OutputInfo]:
    """OutputInfo for each output of an ONNX graph (ORT's type strings)."""
    from onnx import helper

    out = []
    for o in model.graph.output:
        if o.type.WhichOneof("value") == "sequence_type":  # e.g. sklearn-onnx's ZipMap output
            out.append(OutputInfo(o.name, "seq(map)", ()))
            continue
        t = o.type.tensor_type
        kind = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
        name = {"float32": "float", "float64": "double"}.get(kind, kind)
        out.append(OutputInfo(o.name, f"tensor({name})", _dims(t.shape.dim)))
    return out


def session_outputs(session: Any) -> list[OutputInfo]:
    """OutputInfo for each output of an ORT session."""
    return [OutputInfo(o.name, o.type, tuple(o.shape)) for o in session.get_outputs()]


def onnx_interface(model: Any, *, output_name: str | None = None, num_classes: int | None = None
                   ) -> tuple[tuple[int, ...], int | None, int | None, str]:
    """(input shape without batch, classes, fixed batch size or None, scores output name);
    ``num_classes``: the data's, to pick the scores among several outputs (``scores_output``)."""
    inputs = [i for i in model.graph.input if i.name not in _initializer_inputs(model)]
    dims = _dims(inputs[0].type.tensor_type.shape.dim)
    batch = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else None
    shape = tuple(d if isinstance(d, int) else 0 for d in dims[1:])
    scores = scores_output(graph_outputs(model), name=output_name, num_classes=num_classes)
    last = scores.shape[-1]
    classes = last if isinstance(last, int) and last > 0 else None
    return shape, classes, batch, scores.name


# --- fixed batch ---------------------------------------------------------------------------
def _reshape_batch_free(model: Any, batch: int) -> None:
    """Reshape targets that hard-code the batch (``[1, 128]``) infer it (``[-1, 128]``), or
    copy it (``[0, …]``) where -1 is taken; the caller verifies the result."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    constants = {n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                 for a in n.attribute if a.name == "value"}  # the legacy exporter's targets
    for node in model.graph.node:
        given = inits.get(node.input[1]) if node.op_type == "Reshape" else None
        given = given or (constants.get(node.input[1]) if node.op_type == "Reshape" else None)
        if given is None:
            continue
        target = numpy_helper.to_array(given)
        if target.ndim != 1 or not len(target) or target[0] != batch:
            continue
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        free = target.copy()
        if -1 not in target:
            free[0] = -1
        elif not allowzero:
            free[0] = 0
        else:
            continue
        name = f"{node.input[1]}_batch_free"
        if name not in inits:
            inits[name] = numpy_helper.from_array(free.astype(target.dtype), name)
            model.graph.initializer.append(inits[name])
        node.input[1] = name
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    stale = [i for i in model.graph.initializer if i.name not in used]
    for init in stale:  # the replaced targets, now unused
        model.graph.initializer.remove(init)
    for node in [n for n in model.graph.node if n.op_type == "Constant"
                 and n.output[0] not in used]:
        model.graph.node.remove(node)


def _same_rows(reference: list[np.ndarray], got: list[np.ndarray]) -> bool:
    for ref, out in zip(reference, got):
        if ref.shape != out.shape:
            return False
        if ref.dtype.kind == "f":
            if not np.allclose(ref, out, rtol=1e-3, atol=1e-5):
                return False
        elif not np.array_equal(ref, out):
            return False
    return True


def _run_chunks(session: Any, X: np.ndarray, size: int) -> list[np.ndarray]:
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: X[i:i + size]}) for i in range(0, len(X), size)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _quiet_session(path: Path) -> Any:
    """A session that logs nothing (a failed verification is an expected outcome)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def make_batch_dynamic(path: str | Path, batch: int, out_dir: str | Path) -> Path | None:
    """A copy of the model with a dynamic batch dimension, or None where that is not safe.

    Safe means verified: a batch of ``2 × batch`` rows and a batch of one row give, per row,
    the outputs of the original model run ``batch`` rows at a time.
    """
    import onnx

    path, out = Path(path), Path(out_dir) / "model.onnx"  # the name it ships under
    model = onnx.load(str(path))
    init_names = _initializer_inputs(model)
    inp = next(i for i in model.graph.input if i.name not in init_names)
    inp.type.tensor_type.shape.dim[0].dim_param = "batch"
    for o in model.graph.output:
        dims = o.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]  # shapes inferred at the fixed batch
    _reshape_batch_free(model, batch)
    if external_data_files(path):
        save_with_external_data(model, out)
    else:
        onnx.save(model, str(out))
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim[1:]]
    X = np.random.default_rng(0).standard_normal((2 * batch, *shape)).astype(np.float32)
    try:
        original, dynamic = _quiet_session(path), _quiet_session(out)
        reference = _run_chunks(original, X, batch)
        ok = _same_rows(reference, _run_chunks(dynamic, X, len(X))) and \
            _same_rows([r[:1] for r in reference], _run_chunks(dynamic, X[:1], 1))
    except Exception:
        ok = False
    return out if ok else None


def dynamic_batch_copy(path: str | Path, batch: int, *, why: list[str] | None = None
                       ) -> Path | None:
    """``make_batch_dynamic`` into a temporary folder; see ``remove_with`` for its lifetime.
    An error on the way (not a failed verification) is appended to ``why``."""
    tmp = tempfile.mkdtemp(prefix="studio-onnx-")
    try:
        made = make_batch_dynamic(path, batch, tmp)
    except Exception as exc:  # the model stays at its fixed batch; the note says why
        made = None
        if why is not None:
            why.append(f"{type(exc).__name__}: {without_paths(str(exc))[:200]}")
    if made is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return made


def zipmap_free_copy(path: str | Path) -> Path | None:
    """A temporary copy whose ZipMap outputs (sklearn-onnx's probabilities as a sequence of
    maps) are the float [batch, classes] tensors they wrap, under the same output names;
    None when no graph output comes from a ZipMap. See ``remove_with`` for its lifetime."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    names = [o.name for o in model.graph.output]
    zipmaps = [n for n in model.graph.node if n.op_type == "ZipMap" and n.output[0] in names]
    if not zipmaps:
        return None
    for node in zipmaps:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        classes = len(attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or [])
        node.op_type, node.domain = "Identity", ""
        del node.attribute[:]
        classes = _scores_at_label_index(model, node, attrs.get("classlabels_int64s")) or classes
        model.graph.output[names.index(node.output[0])].CopyFrom(helper.make_tensor_value_info(
            node.output[0], TensorProto.FLOAT, ["batch", classes or None]))
    out = Path(tempfile.mkdtemp(prefix="studio-onnx-")) / "model.onnx"
    onnx.save(model, str(out))
    return out


def _scores_at_label_index(model: Any, node: Any, labels: Sequence[int] | None) -> int:
    """Integer class labels other than 0..C-1 (e.g. 1, 2, 3): route column j of the scores to
    column ``labels[j]`` (an exact 0/1 MatMul), as the studio scores integer labels as class
    indices; the new column count, or 0 when nothing was changed."""
    from onnx import numpy_helper

    labels = list(labels or [])
    if not labels or min(labels) < 0 or labels == list(range(len(labels))) \
            or max(labels) >= max(1024, 2 * len(labels)):
        return 0
    route = np.zeros((len(labels), max(labels) + 1), dtype=np.float32)
    route[np.arange(len(labels)), labels] = 1.0
    name = f"{node.output[0]}_by_label"
    model.graph.initializer.append(numpy_helper.from_array(route, f"{name}_route"))
    node.op_type = "MatMul"
    node.input.append(f"{name}_route")
    return route.shape[1]


def remove_with(owner: Any, path: Path) -> None:
    """Delete ``path``'s temporary folder when ``owner`` (e.g. its session) is collected."""
    weakref.finalize(owner, shutil.rmtree, str(path.parent), True)


def io_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """What report.json says about an ONNX input: the scored output and its batch handling."""
    return {"output_name": meta.get("output_name"), "fixed_batch": meta.get("fixed_batch"),
            "batch_made_dynamic": bool(meta.get("batch_made_dynamic"))}
