"""``profile``: where a model's forward time goes, layer by layer; ``Profiler`` (seed facade)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidParameterError, UnsupportedModelError, check_range
from core.profiling._result import LayerProfile, Profile

__all__ = ["DEFAULT_TOLERANCE", "Profiler", "profile", "write_profile"]

# Layers' median sum vs the median whole forward of the same runs: what is left is time
# between layers (Python, functional ops, hook overhead), a few % on the studio's models.
DEFAULT_TOLERANCE = 0.25


def _check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParameterError("device", "'cpu' on this machine (torch sees no CUDA "
                                        "GPU here)", device)
        return device
    raise InvalidParameterError("device", "'cpu' or 'cuda'", device)


def _open_model(model: Any, data_or_input: Any) -> tuple[Any, Path | None, Any]:
    """(torch module or None, ONNX file or None, the data or None) by core.inputs' rules; an
    input tensor, array or DataLoader is the input itself, so the model needs no data then."""
    from core.data import Dataset
    from core.inputs import open_input

    if type(model).__name__ == "InferenceSession":
        raise UnsupportedModelError("Pass the .onnx file (or run folder) to profile, not an "
                                    "InferenceSession: profiling is a session option.")
    dataish = data_or_input is None or isinstance(data_or_input, (str, Path, Dataset))
    inp = open_input(model, data_or_input if dataish else None, data_required=dataish)
    if inp.kind != "onnx":
        return inp.model, None, inp.data
    # The ONNX file as written (profiling opens its own session over it).
    return None, inp.path if inp.path.is_file() else inp.path / "model.onnx", inp.data


def _check_layers_run_as_modules(module: Any) -> None:
    """Refuse a module whose layers are not called as modules, so forward hooks cannot time
    them: TorchScript (no hooks) and a torch.export program (one flat graph of ops)."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        kind = "a TorchScript model, which takes no forward hooks"
    elif isinstance(module, torch.fx.GraphModule) and not _calls_a_weighted_layer(module):
        kind = "a torch.export (.pt2) program, whose layers run as one flat graph of ops"
    else:
        return
    raise UnsupportedModelError(
        f"Layer-wise profiling times each layer with forward hooks; this is {kind}. Profile "
        "its ONNX export (torch.onnx.export) or the Python nn.Module instead.")


def _calls_a_weighted_layer(graph_module: Any) -> bool:
    """Whether an fx graph calls any module holding weights (symbolic_trace's do; a
    torch.export program's module calls only its guard check)."""
    called = {n.target for n in graph_module.graph.nodes if n.op == "call_module"}
    return any(any(True for _ in graph_module.get_submodule(t).parameters()) for t in called)


def _input_batch(data_or_input: Any, run_data: Any, batch_size: int) -> np.ndarray:
    """One input batch: a tensor/array as given, else ``batch_size`` test rows of the data."""
    from core.data import Dataset, load_dataset
    from core.measure import batch_of

    src = data_or_input if run_data is None else run_data
    if src is None:
        raise InvalidParameterError("data_or_input", "an input tensor/array, a Dataset, a "
                                    "data set name or a DataLoader", None)
    if hasattr(src, "detach"):
        return np.ascontiguousarray(src.detach().cpu().float().numpy())
    if isinstance(src, np.ndarray):
        return np.ascontiguousarray(src, dtype=np.float32)
    if isinstance(src, (str, Path)):
        src = load_dataset(src)
    if isinstance(src, Dataset):
        return batch_of(src.split("test")[0], batch_size)
    if hasattr(src, "__iter__"):  # a DataLoader: its first batch's inputs
        first = next(iter(src))
        x = first[0] if isinstance(first, (tuple, list)) else first
        return np.ascontiguousarray(np.asarray(x.detach().cpu().float().numpy()
                                               if hasattr(x, "detach") else x, np.float32))
    raise InvalidParameterError("data_or_input", "an input tensor/array, a Dataset, a data set "
                                "name or a DataLoader", type(src).__name__)


def _plain_latency(model: Any, x: np.ndarray, threads: int, budget_s: float) -> float:
    """Whole-model p50 without hooks, by core.measure's interleaved protocol."""
    from core.measure import as_predictor, interleaved_latency

    pred = as_predictor(model, threads=threads)
    lat = interleaved_latency({"model": pred}, x, batch_sizes=(len(x),), budget_s=budget_s)
    return lat["model"][str(len(x))]["p50"]


def profile(model: Any, data_or_input: Any = None, *, batch_size: int = 1,
            runs: int = 50, warmup: int = 10, threads: int = 1,
            tolerance: float = DEFAULT_TOLERANCE, device: str = "cpu",
            budget_s: float = 0.4) -> Profile:
    """Profile one forward pass layer by layer (torch module, model file, run folder, .onnx).

    Every layer's median time over ``runs`` forwards (after ``warmup``), its share of the
    whole forward, params, FLOPs (torch) and memory; the per-layer sum is checked against
    the whole forward of the same runs (``tolerance``), and the whole-model latency without
    profiling is measured by core.measure's protocol (``plain_total_ms``).
    """
    check_range("batch_size", batch_size, low=1, high=4096, kind=int)
    check_range("runs", runs, low=3, high=10000, kind=int)
    check_range("warmup", warmup, low=0, high=10000, kind=int)
    check_range("threads", threads, low=1, high=256, kind=int)
    check_range("tolerance", tolerance, low=0.0, high=1.0, low_inclusive=False)
    device = _check_device(device)
    module, onnx_file, run_data = _open_model(model, data_or_input)
    x = _input_batch(data_or_input, run_data, batch_size)
    if onnx_file is not None:
        from core.profiling._onnx import profile_onnx

        if device != "cpu":
            raise InvalidParameterError("device", "'cpu' for an ONNX model (the studio runs "
                                        "ONNX Runtime's CPU provider)", device)
        prof = profile_onnx(onnx_file, x, runs=runs, warmup=warmup, threads=threads,
                            tolerance=tolerance)
        plain = _plain_latency(str(onnx_file), x, threads, budget_s)
    else:
        import torch

        from core.profiling._torch import profile_torch

        if not isinstance(module, torch.nn.Module):
            raise UnsupportedModelError("Layer-wise profiling needs a torch.nn.Module or an "
                                        f"ONNX model; got {type(module).__name__}.")
        _check_layers_run_as_modules(module)
        xt = torch.from_numpy(x).to(device)
        module = module.to(device)
        prof = profile_torch(module, xt, runs=runs, warmup=warmup, threads=threads,
                             tolerance=tolerance, device=device)
        plain = _plain_latency(module, x, threads, budget_s) if device == "cpu" else None
    notes = list(prof.notes)
    if prof.coverage < 1 - tolerance:
        notes.append("Much time falls between layers: at small batches Python and dispatch "
                     "overhead is a large part of a small model's forward.")
    if plain is not None and plain > 1.5 * prof.total_ms:
        notes.append(f"The whole forward without profiling took {plain:.3f} ms (p50), more "
                     f"than the {prof.total_ms:.3f} ms the layers add up to: the machine was "
                     "busy (stalls fall in whichever layer runs); the per-layer medians are "
                     "the steadier figures.")
    return dataclasses.replace(prof, plain_total_ms=plain, notes=tuple(notes))


class Profiler:
    """Seed facade: ``Profiler(model).profile(input_data=x)``; ``find_bottlenecks(0.05)``."""

    def __init__(self, model: Any, **options: Any) -> None:
        self.model, self.options = model, options
        self.last: Profile | None = None

    def profile(self, input_data: Any = None, device: str = "cpu", **options: Any) -> Profile:
        self.last = profile(self.model, input_data, device=device,
                            **{**self.options, **options})
        return self.last

    def find_bottlenecks(self, threshold: float = 0.05) -> list[LayerProfile]:
        if self.last is None:
            raise InvalidParameterError("profile", "run before find_bottlenecks() (call "
                                        "profiler.profile(input_data=...))", None)
        return self.last.find_bottlenecks(threshold)


def write_profile(prof: Profile, out_dir: str | Path, *, threshold: float = 0.05,
                  model_name: str = "model", overwrite: bool = False) -> dict[str, Any]:
    """Write ``out_dir/report.json`` (operation ``profile``) and return the report."""
    from core.artifacts import build_report, staging, write_report
    from core.measure import environment_manifest

    with staging(out_dir, overwrite=overwrite) as tmp:
        report = build_report(
            operation="profile", method=prof.backend, seed=0, baseline=None, result=None,
            config={"model": model_name, "batch_size": prof.batch_size, "runs": prof.runs,
                    "threshold": threshold, "tolerance": prof.tolerance},
            artifacts=[], environment=environment_manifest(threads=prof.threads),
            warnings=[] if prof.within_tolerance else [
                f"The layers account for {100 * prof.coverage:.0f} % of the forward time, "
                f"outside the tolerance ±{100 * prof.tolerance:.0f} %."],
            extra={"profile": prof.to_dict(), "bottlenecks": [
                lay.name for lay in prof.find_bottlenecks(threshold)],
                "heaviest_layers": _heaviest(prof)})
        write_report(tmp, report)
    return report


def _heaviest(prof: Profile) -> list[dict[str, Any]]:
    """The slowest layers' useful GMAC/s and share of this CPU's measured peak."""
    from core.measure._efficiency import heaviest_layers
    from core.measure._peak import peaks

    try:
        peak = peaks()
    except Exception:  # the microbenchmark must never fail a profile
        peak = None
    return heaviest_layers([lay.to_dict() for lay in prof.layers], threads=prof.threads,
                           peak=peak)
