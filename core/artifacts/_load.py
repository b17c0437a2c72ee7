"""Safe loading: built-in run folders, ONNX, TorchScript and torch.export; never pickles."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.artifacts._inspect import check_zip_members, load_pt2_safely
from core.artifacts._trust import check_model_code_allowed
from core.errors import ModelFileError, without_paths

PICKLE_MESSAGE = (
    "'{name}' is a pickle-based file (e.g. a torch.save checkpoint). The studio never unpickles "
    "uploaded files, because unpickling can run arbitrary code. Export the model instead: "
    "torch.onnx.export(model, x, 'model.onnx') or "
    "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')."
)


@dataclass
class LoadedModel:
    """A model ready to run: a torch module or an ORT session, with what we know of it."""

    model: Any
    kind: str  # "builtin", "onnx", "torchscript" or "export"
    input_shape: tuple[int, ...]
    num_classes: int | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_torch(self) -> bool:
        return self.kind != "onnx"

    def files(self) -> list[Path]:
        """The artifact file(s) whose bytes make this model's size."""
        if self.kind == "builtin":
            return [self.path / self.meta.get("weights", "model.safetensors")]
        if self.kind == "onnx":
            from core.artifacts._onnx import onnx_files

            return onnx_files(self.path)
        return [self.path]


def detect_format(path: str | Path) -> str:
    """'onnx', 'torchscript' or 'export', judged by content (never by name); else an error."""
    path = Path(path)
    name = path.name
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelFileError(f"Cannot read '{name}': {exc.strerror}.") from None
    if head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6)):
        raise ModelFileError(PICKLE_MESSAGE.format(name=name))
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                check_zip_members(zf, name)  # declared sizes, before any member is read
                names = zf.namelist()
        except zipfile.BadZipFile:
            raise ModelFileError(f"'{name}' is a damaged zip archive.") from None
        if any(re.search(r"(^|/)code/", n) for n in names):
            return "torchscript"
        if any(n.endswith("archive_format") for n in names):
            return "export"
        if any(n.endswith("data.pkl") for n in names):
            raise ModelFileError(PICKLE_MESSAGE.format(name=name))
        raise ModelFileError(f"'{name}' is a zip archive but not a TorchScript or "
                             "torch.export model.")
    if _looks_like_onnx(path):
        return "onnx"
    raise ModelFileError(f"'{name}' is not a model file the studio can load. Use ONNX (.onnx), "
                         "TorchScript (.pt) or torch.export (.pt2).")


def _looks_like_onnx(path: Path) -> bool:
    from core.artifacts._onnx import read_graph

    try:
        model = read_graph(path)
    except Exception:
        return False
    return len(model.graph.node) > 0


def check_onnx(path: str | Path) -> Any:
    """Validate an ONNX model (by path: external data and > 2 GB models too); its graph."""
    from core.artifacts._onnx import check_onnx_file

    return check_onnx_file(path)


def _load_onnx(path: Path, *, threads: int, output_name: str | None = None,
               num_classes: int | None = None) -> LoadedModel:
    """An ORT session over the file; a fixed batch dimension is made dynamic where verified
    safe (a temporary copy), else kept and every caller runs it at that batch size."""
    from core.artifacts._onnx import (
        dynamic_batch_copy,
        onnx_interface,
        remove_with,
        zipmap_free_copy,
    )
    from core.measure import ort_session

    model = check_onnx(path)
    notes, given = [], path
    if any(n.op_type == "ZipMap" for n in model.graph.node) and output_name is None:
        unzipped = zipmap_free_copy(path)
        if unzipped is not None:
            path, model = unzipped, check_onnx(unzipped)
            notes.append("The model's probabilities came as a sequence of maps (ZipMap); the "
                         "studio measures and ships the same model with them as a [batch, "
                         "classes] tensor, column k for class label k (as skl2onnx's "
                         "zipmap=False, with integer labels as indices).")
    shape, classes, batch, output = onnx_interface(model, output_name=output_name,
                                                   num_classes=num_classes)
    if output_name is None:
        notes.extend(_several_scores_note(model, output))
    meta: dict[str, Any] = {"output_name": output, "fixed_batch": batch, "notes": notes}
    source = path
    if batch is not None:
        failed: list[str] = []
        dynamic = dynamic_batch_copy(path, batch, why=failed)
        if dynamic is not None:
            source = dynamic
            meta["batch_made_dynamic"] = True
            meta["notes"].append(
                f"The model's batch dimension was fixed at {batch}; the studio made it dynamic "
                f"(verified: batches of {2 * batch} and 1 give the original per-row outputs) "
                "and measures and ships that model.")
        else:
            cause = (f"making it dynamic failed ({failed[0]})" if failed else
                     "could not be made dynamic safely")
            meta["notes"].append(
                f"The model's batch dimension is fixed at {batch} and {cause}: accuracy "
                f"is evaluated {batch} row(s) at a time and latency is measured at batch "
                f"{batch} only. For other batch sizes, export with a dynamic batch from an "
                "example x of 2 or more rows: torch.onnx.export("
                "model, (x,), 'model.onnx', dynamic_shapes=({0: torch.export.Dim('batch')},)).")
    try:
        session = ort_session(source, threads=threads, output_name=output)
    except Exception as exc:  # the checker passed it, ONNX Runtime does not load it
        raise ModelFileError(f"ONNX Runtime cannot load '{given.name}': {_ort_reason(exc)}"
                             ) from None
    for copy in {source, path} - {given}:
        remove_with(session, copy)
    return LoadedModel(session, "onnx", shape, classes, source, meta)


def _ort_reason(exc: Exception) -> str:
    """ONNX Runtime's own reason, without its source locations or server paths."""
    text = re.split(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", str(exc))[-1]
    text = re.sub(r"^Load model from .*? failed:", "", text.strip().splitlines()[0])
    return without_paths(re.sub(r"\S+\.(cc|h):\d+ \S+ ", "", text)).strip()[:300]


def _several_scores_note(model: Any, chosen: str) -> list[str]:
    """A note naming the scored output when several outputs could hold class scores."""
    from core.artifacts._onnx import graph_outputs, score_candidates

    found = score_candidates(graph_outputs(model))
    if len(found) < 2:
        return []
    listed = ", ".join(f"'{o.name}' {[d if d is not None else '?' for d in o.shape]}"
                       for o in found)
    return [f"The model has {len(found)} outputs that could hold class scores ({listed}); the "
            f"studio scores '{chosen}'. To score another, name it (output_name, --output-name)."]


def load_model(path: str | Path, *, threads: int = 1, output_name: str | None = None,
               trust_model: bool = False, num_classes: int | None = None) -> LoadedModel:
    """Load a run folder (built-in family or its model.onnx), an ONNX, TorchScript or .pt2 file.

    TorchScript and .pt2 run code stored in the file, so they load only with ``trust_model=True``
    or inside ``trusted_model_code()`` (core/artifacts/_trust.py), unless the studio wrote them.
    ``num_classes``: the data's, to pick an ONNX file's scores among several outputs.
    """
    path = Path(path)
    if path.is_dir():
        return _load_run_folder(path, threads=threads, trust_model=trust_model)
    if not path.is_file():
        raise ModelFileError(f"No model file or run folder at '{path.name}'.")
    fmt = detect_format(path)
    if fmt == "onnx":
        return _load_onnx(path, threads=threads, output_name=output_name,
                          num_classes=num_classes)
    check_model_code_allowed(path, fmt, trust_model=trust_model)
    return LoadedModel(_load_torch(path, fmt), fmt, (), None, path)


def _load_torch(path: Path, fmt: str) -> Any:
    """A TorchScript module or a .pt2 program's module (after the .pt2 was checked)."""
    import torch

    if fmt == "export":
        program = load_pt2_safely(path)  # refuses pickled parts; its own StudioErrors pass
    try:
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        return program.module()
    except Exception as exc:
        raise ModelFileError(f"'{path.name}' could not be loaded as {fmt}: "
                             f"{str(exc).splitlines()[0][:200]}") from None


def _load_run_folder(folder: Path, *, threads: int, trust_model: bool) -> LoadedModel:
    meta_file = folder / "model.json"
    if meta_file.is_file() and (folder / "model.sparse.npz").is_file():
        from core.artifacts._sparse import load_sparse_state  # unstructured pruning's form
        from core.models import build_model

        meta = json.loads(meta_file.read_text())
        model = build_model(meta["family"], **meta["kwargs"])
        model.load_state_dict(load_sparse_state(folder / "model.sparse.npz"))
        model.eval()
        meta.setdefault("weights", "model.sparse.npz")
        return LoadedModel(model, "builtin", tuple(model.input_shape),
                           meta["kwargs"].get("num_classes"), folder, meta)
    if meta_file.is_file() and (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        from core.models import build_model

        meta = json.loads(meta_file.read_text())
        model = build_model(meta["family"], **meta["kwargs"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        model.eval()
        return LoadedModel(model, "builtin", tuple(model.input_shape),
                           meta["kwargs"].get("num_classes"), folder, meta)
    for name in ("model.onnx", "model.pt", "model.pt2"):
        if (folder / name).is_file():
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            loaded = load_model(folder / name, threads=threads,
                                output_name=meta.get("output_name") if name == "model.onnx"
                                else None, trust_model=trust_model)
            if meta_file.is_file():
                loaded.meta = {**loaded.meta, **meta}
                loaded.input_shape = tuple(loaded.meta.get("input_shape", loaded.input_shape))
            return loaded
    raise ModelFileError(f"'{folder.name}' holds no model (model.json + model.safetensors, "
                         "model.onnx, model.pt or model.pt2).")
