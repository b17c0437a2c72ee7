"""The ``scale`` verb: run one federated experiment at several client counts and measure it."""

from __future__ import annotations

import csv
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from core.artifacts import new_run_id
from core.callbacks import Callbacks
from core.errors import InvalidParameterError, UnsupportedModelError
from core.federated._clients import ClientSet, generate_synthetic_clients, partition_dataset
from core.federated._config import ScaleConfig
from core.federated._engine import FedResult, per_client_bytes, run_federated
from core.registry import register_method, resolve_config

if TYPE_CHECKING:
    from core.runs import RunResult

__all__ = ["ScalabilityTester", "estimate_memory_mb", "scale", "convergence_round"]


class _PeakRSS:
    """Samples this process's resident memory in a thread; ``growth_mb`` is peak − start."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval_s
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return max(self.peak - self.start, 0) / 2**20


def convergence_round(accuracies: Sequence[float], tolerance: float) -> int:
    """First round (1-based) whose accuracy is within ``tolerance`` of the final one."""
    if not accuracies:
        return 0
    final = accuracies[-1]
    return next(i + 1 for i, a in enumerate(accuracies) if a >= final - tolerance)


def estimate_memory_mb(model: Any, config: ScaleConfig, num_clients: int,
                       input_numel: int) -> float:
    """Up-front estimate of the memory one client count needs (client data + a vmap chunk)."""
    params = sum(p.numel() for p in model.parameters())
    rows = num_clients * config.samples_per_client * (1 + config.local_test_fraction)
    rows *= 1.0 + 2.0 * config.quantity_skew  # padding to the largest client
    data = rows * (input_numel * 4 + 8) * 3   # numpy arrays, padded copy, torch view/gather
    chunk = config.chunk_size or max(1, int(config.chunk_memory_mb * 2**20 //
                                            per_client_bytes(model, config.batch_size,
                                                             input_numel)))
    chunk = min(chunk, num_clients)
    work = chunk * per_client_bytes(model, config.batch_size, input_numel)
    return (data + work + 8 * params * 4) / 2**20


def _available_mb(config: ScaleConfig) -> float:
    import psutil

    if config.memory_limit_mb is not None:
        return float(config.memory_limit_mb)
    return psutil.virtual_memory().available * 0.8 / 2**20


def _resolve_model(model: Any, data: Any, config: ScaleConfig
                   ) -> tuple[Any, int | None, str | None, Any, list[str]]:
    """(module, bytes that travel or None, parent run id, data, warnings)."""
    import torch

    from core.models import list_families, model_for_data

    notes: list[str] = []
    if isinstance(model, torch.nn.Module):
        return model, None, None, data, notes
    if isinstance(model, str) and model in list_families():
        shape, classes = _shape_and_classes(data, config)
        kw = {"hidden_dims": [32, 16]} if model == "mlp" else {}
        torch.manual_seed(config.seed)
        return model_for_data(model, shape, classes, **kw), None, None, data, notes
    if isinstance(model, (str, Path)):  # a run folder (its data unless given) or a file
        from core.inputs import kind_name, open_input

        inp = open_input(model, data)
        if not isinstance(inp.model, torch.nn.Module):
            raise UnsupportedModelError(
                f"'{Path(model).name}' is {kind_name(inp.kind)}; federated training needs a "
                "torch model (a trained, pruned or distilled built-in variant). Quantized ONNX "
                "variants cannot be trained.")
        size = ((inp.report or {}).get("result") or {}).get("size_bytes")
        return inp.model, int(size) if size else None, inp.run_id, inp.data, notes
    if callable(model):
        built = model()
        if not isinstance(built, torch.nn.Module):
            raise InvalidParameterError("model_fn", "a callable returning a torch.nn.Module",
                                        type(built).__name__)
        return built, None, None, data, notes
    raise InvalidParameterError("model", "a torch module, a model factory, a built-in family "
                                f"{list_families()} or a run folder", model)


def _is_dataset(data: Any) -> bool:
    return hasattr(data, "split") and hasattr(data, "num_classes")


def _shape_and_classes(data: Any, config: ScaleConfig) -> tuple[tuple[int, ...], int]:
    if _is_dataset(data):
        return tuple(data.input_shape), int(data.num_classes)
    return (config.input_dim,), config.num_classes


def _make_clients(data: Any, config: ScaleConfig, num_clients: int,
                  input_shape: tuple[int, ...], num_classes: int) -> ClientSet:
    kw = dict(alpha=config.alpha, feature_shift=config.feature_shift,
              quantity_skew=config.quantity_skew,
              local_test_fraction=config.local_test_fraction, seed=config.seed)
    if _is_dataset(data):
        return partition_dataset(data, num_clients, config.samples_per_client, **kw)
    if len(input_shape) != 1:
        raise InvalidParameterError("data", "a data set for a model with image input "
                                    "(synthetic clients are tabular)", "synthetic")
    return generate_synthetic_clients(num_clients, config.samples_per_client, input_shape[0],
                                      num_classes, **kw)


def _synthetic_dataset(clients: ClientSet, config: ScaleConfig) -> Any:
    """A Dataset view of synthetic clients, so the final model is measured like any other."""
    from core.data import Dataset, DataSpec

    X, y = clients.pooled()
    return Dataset(
        "synthetic-clients", X, y, np.concatenate(clients.X_local),
        np.concatenate(clients.y_local), clients.X_test, clients.y_test,
        [str(i) for i in range(clients.num_classes)], {"type": "none"},
        DataSpec(source="synthetic", seed=config.seed))


def _run_engine(model: Any, clients: ClientSet, config: ScaleConfig, model_bytes: int | None,
                cb: Callbacks, progress: Callable[[int, dict[str, Any]], None]) -> FedResult:
    if config.engine == "flower":
        from core.federated._flower import run_flower

        return run_flower(model, clients, config, model_bytes=model_bytes, callbacks=cb,
                          progress=progress)
    return run_federated(model, clients, config, model_bytes=model_bytes, callbacks=cb,
                         progress=progress)


def _open_data(data: Any, config: ScaleConfig) -> Any:
    """``None`` for synthetic clients, else the data set to partition."""
    from core.data import load_dataset

    if config.engine == "flower":  # say what to install before any work
        from core.federated._flower import _import_flwr

        _import_flwr()
    if isinstance(data, str) and data != "synthetic":
        return load_dataset(data, seed=config.seed)
    return None if data == "synthetic" else data


def _check_fits(model: Any, config: ScaleConfig, shape: tuple[int, ...]) -> None:
    """The model takes the data's inputs, and every client count fits in memory."""
    model_shape = tuple(getattr(model, "input_shape", ()) or ())
    if model_shape and math.prod(model_shape) != math.prod(shape):
        raise InvalidParameterError("model input shape", f"matching the data's {list(shape)}",
                                    list(model_shape))
    numel = math.prod(shape)
    avail = _available_mb(config)
    for count in config.client_counts:
        need = estimate_memory_mb(model, config, count, numel)
        if need > avail:
            raise InvalidParameterError(
                "client_counts", f"small enough to fit in memory: {count} clients need an "
                f"estimated {need:,.0f} MB and {avail:,.0f} MB is available", count)


def _count_row(count: int, config: ScaleConfig, res: FedResult, clients: ClientSet,
               timing: dict[str, float], peak_mb: float, travel_bytes: int) -> dict[str, Any]:
    """One client count's measured figures (the scalability table's row)."""
    accs = [h["accuracy"] for h in res.history]
    return {
        "clients": count, "rounds": config.rounds, "engine": res.engine,
        "chunk_size": res.chunk_size, "total_s": timing["total_s"],
        "setup_s": timing["setup_s"],
        "time_per_round_s": float(np.median(res.round_seconds)),
        "time_per_round_p95_s": float(np.percentile(res.round_seconds, 95)),
        "peak_memory_mb": peak_mb,
        "final_accuracy": res.final_accuracy,
        "best_accuracy": float(max(accs)),
        "convergence_round": convergence_round(accs, config.convergence_tolerance),
        "model_bytes": travel_bytes,
        "bytes_per_round": int(np.median([h["bytes_up"] for h in res.history])),
        "bytes_communicated": int(sum(h["bytes_up"] + h["bytes_down"]
                                      for h in res.history)),
        "participants_per_round": float(np.mean([h["participants"] for h in res.history])),
        "local_accuracy": res.adaptation.get("local_accuracy"),
        "adapted_accuracy": res.adaptation.get("adapted_accuracy"),
        "partition": clients.stats(),
    }


def _run_count(model: Any, data: Any, config: ScaleConfig, count: int, ci: int,
               setup: dict[str, Any], cb: Callbacks
               ) -> tuple[dict[str, Any], FedResult, ClientSet]:
    """Run the experiment at one client count (progress ``ci``/counts); its row, result and
    clients. ``setup``: the data's ``shape``/``classes`` and the ``travel_bytes``."""
    n_counts = len(config.client_counts)

    def on_round(r: int, row: dict[str, Any]) -> None:
        cb.progress((ci + r / config.rounds) / n_counts,
                    f"{count} clients: round {r}/{config.rounds}")
        cb.metrics({"clients": count, **row})

    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        clients = _make_clients(data, config, count, setup["shape"], setup["classes"])
        setup_s = time.perf_counter() - t0
        res = _run_engine(model, clients, config, setup["travel_bytes"], cb, on_round)
        total = time.perf_counter() - t0
    row = _count_row(count, config, res, clients, {"total_s": total, "setup_s": setup_s},
                     mem.growth_mb, setup["travel_bytes"])
    return row, res, clients


def scale(
    model_or_run: Any = "mlp",
    data: Any = None,
    config: ScaleConfig | Mapping[str, Any] | str | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Run the federated experiment at every client count and write ``out_dir/report.json``.

    ``model_or_run``: a torch module, a factory returning one, a built-in family name
    (``"mlp"`` is 9→[32, 16]→4 on the default synthetic task) or a run folder. ``data``:
    ``None``/``"synthetic"`` for seeded synthetic clients, a built-in name or a Dataset to
    partition. Per count the report holds total time, median time per round, peak RSS
    growth, final accuracy, convergence round and bytes communicated; ``scalability.csv``
    and ``rounds.csv`` hold the same as tables.
    """
    import copy

    import torch

    from core.artifacts import save_model, staging, write_run
    from core.measure import serialized_size
    from core.models import is_builtin
    from core.runs import RunResult

    config = resolve_config(config, overrides, area="federated", cls=ScaleConfig)
    cb = Callbacks.ensure(callbacks)
    data = _open_data(data, config)
    model, travel_bytes, parent_id, data, notes = _resolve_model(model_or_run, data, config)
    parent = parent or parent_id
    shape, classes = _shape_and_classes(data, config)
    _check_fits(model, config, shape)
    if travel_bytes is None:
        travel_bytes = serialized_size(model)
    setup = {"shape": shape, "classes": classes, "travel_bytes": travel_bytes}
    initial = copy.deepcopy(model.state_dict())
    if config.engine != "flower":  # first vmap/autograd call pays one-off set-up costs
        _warm_up(model, config, shape, classes)
    rows: list[dict[str, Any]] = []
    round_rows: list[dict[str, Any]] = []
    final_model, final_clients = None, None
    for ci, count in enumerate(config.client_counts):
        cb.progress(ci / len(config.client_counts), f"{count} clients: preparing")
        model.load_state_dict(initial)
        row, res, final_clients = _run_count(model, data, config, count, ci, setup, cb)
        rows.append(row)
        round_rows += [{"clients": count, **h} for h in res.history]
        notes += [w for w in res.warnings if w not in notes]
        final_model = res.load_into(copy.deepcopy(model))
    cb.progress(0.97, "saving and measuring the final model")
    dataset = data if _is_dataset(data) else _synthetic_dataset(final_clients, config)
    summary = _summary(rows)
    with staging(out_dir, overwrite=overwrite, inputs=[model_or_run]) as tmp:
        saved = save_model(final_model, tmp, data=dataset)
        files = [tmp / "model.safetensors"] if is_builtin(final_model) else \
            [p for p in saved["files"] if p.suffix == ".onnx"]
        _write_csv(tmp / "scalability.csv", [{k: v for k, v in r.items() if k != "partition"}
                                            for r in rows])
        _write_csv(tmp / "rounds.csv", round_rows)
        torch.manual_seed(config.seed)
        report = write_run(
            tmp, operation="scale", method=config.algorithm, config=config.to_dict(),
            data=dataset, result_model=final_model, result_files=files, seed=config.seed,
            warnings=notes, parent=parent, measure_options=measure_options, callbacks=None,
            extra={"scalability": {"results": rows, "rounds": round_rows, "summary": summary,
                                   "model_bytes": travel_bytes,
                                   "final_model_clients": config.client_counts[-1]}},
        )
    cb.progress(1.0, "done")
    return RunResult(Path(out_dir), report)


def _warm_up(model: Any, config: ScaleConfig, shape: tuple[int, ...], classes: int) -> None:
    """One tiny untimed run so the first measured count does not pay the one-off costs."""
    rng = np.random.default_rng(0)
    n = max(classes, 2)
    X = [rng.normal(size=(n, *shape)).astype(np.float32) for _ in range(2)]
    y = [np.arange(n, dtype=np.int64) % classes for _ in range(2)]
    clients = ClientSet(X, y, X, y, X[0], y[0], classes, shape)
    cfg = config.replace(rounds=1, adapt_steps=1, client_counts=(2,), client_fraction=1.0,
                         stragglers=0.0)
    run_federated(model, clients, cfg, engine=cfg.engine)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth of time per round and memory from the smallest to the largest count."""
    if len(rows) < 2:
        return {}
    a, b = rows[0], rows[-1]
    clients_ratio = b["clients"] / a["clients"]
    time_ratio = b["time_per_round_s"] / max(a["time_per_round_s"], 1e-12)
    return {"clients_ratio": clients_ratio, "time_per_round_ratio": time_ratio,
            "sublinear": bool(time_ratio < clients_ratio)}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


class ScalabilityTester:
    """Seed-style facade: ``ScalabilityTester(model_fn).run_scalability_test(...)``.

    Forwards to :func:`scale`; ``model_fn`` builds the model (default: ``mlp`` 9→[32,16]→4).
    """

    def __init__(self, model_fn: Callable[[], Any] | str = "mlp", *, data: Any = None,
                 out_dir: str | Path | None = None, **config: Any) -> None:
        self.model_fn, self.data, self.out_dir, self.config = model_fn, data, out_dir, config
        self.last_run: Any = None

    def run(self, client_counts: Sequence[int] = (4, 10, 25, 50, 100), rounds: int = 20,
            samples_per_client: int = 35, **overrides: Any) -> list[dict[str, Any]]:
        """Per-count results (total time, time per round, memory, accuracy, convergence)."""
        cfg = ScaleConfig(client_counts=tuple(client_counts), rounds=rounds,
                          samples_per_client=samples_per_client,
                          **{**self.config, **overrides})
        out = self.out_dir or Path("results") / new_run_id("scale")
        self.last_run = scale(self.model_fn, self.data, cfg, out_dir=out,
                              measure_options={"budget_s": 0.05, "memory": False})
        return self.last_run.report["scalability"]["results"]

    def run_scalability_test(self, client_counts: Sequence[int] = (4, 10, 25, 50, 100),
                             num_rounds: int = 20, samples_per_client: int = 35,
                             **overrides: Any) -> list[dict[str, Any]]:
        """The seeds' name for :meth:`run`."""
        return self.run(client_counts, num_rounds, samples_per_client, **overrides)


def _registered(algorithm: str) -> Callable[..., Any]:
    def verb(model_or_run: Any, data: Any, config: ScaleConfig | None = None,
             **kw: Any) -> Any:
        cfg = (config or ScaleConfig()).replace(algorithm=algorithm)
        return scale(model_or_run, data, cfg, **kw)

    verb.__name__ = f"scale_{algorithm}"
    return verb


register_method("fedavg", area="federated", config=ScaleConfig,
                summary="FedAvg: local SGD epochs, sample-weighted averaging"
                )(_registered("fedavg"))
register_method("fedprox", area="federated", config=ScaleConfig,
                summary="FedProx: FedAvg with a proximal term mu/2·||w − w_global||²"
                )(_registered("fedprox"))
register_method("reptile", area="federated", config=ScaleConfig,
                summary="Federated meta-learning (first-order MAML / Reptile), per-client "
                "adaptation")(_registered("reptile"))
