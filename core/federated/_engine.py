"""The federated round engine: all clients of a round at once (vmap), or a per-client loop.

Both engines share one seeded schedule per round (who is sampled, who drops out, which rows
each local step uses), so they train the same model up to float rounding; the loop is the
reference implementation, the vectorised engine the fast one. Clients are processed in
chunks whose size bounds the memory the stacked client parameters need.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.errors import UnsupportedModelError
from core.federated._clients import ClientSet, padded
from core.federated._config import ScaleConfig

__all__ = ["FedResult", "RoundPlan", "plan_round", "run_federated", "per_client_bytes"]


# --------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class RoundPlan:
    """Who takes part in a round and which rows each of their local steps uses."""

    sampled: np.ndarray          # client ids sent the model
    participants: np.ndarray     # sampled clients that return an update (not stragglers)
    index: np.ndarray            # [P, steps, batch] row positions into each client's data
    mask: np.ndarray             # [P, steps, batch] valid rows


def _perms(rng: np.random.Generator, n: np.ndarray, copies: int) -> np.ndarray:
    """``[copies, P, nmax]`` random permutations of each client's rows (valid rows first)."""
    nmax = max(int(n.max(initial=1)), 1)
    keys = rng.random((copies, len(n), nmax))
    keys[:, np.arange(nmax)[None, :] >= n[:, None]] = 2.0
    return np.argsort(keys, axis=2, kind="stable")


def local_schedule(rng: np.random.Generator, n: np.ndarray, batch_size: int, *,
                   epochs: int | None = None, steps: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``[P, S, B]`` and a validity mask for P clients with ``n`` rows each.

    With ``epochs``: each epoch is one shuffled pass over every client's rows in batches
    (clients with fewer rows have empty, skipped steps at the end). With ``steps``: each
    client takes exactly ``steps`` batches of ``min(batch_size, n_i)`` rows, cycling through
    reshuffled passes of its data (Reptile inner loop, adaptation).
    """
    n = np.asarray(n, dtype=np.int64)
    P, B = len(n), int(batch_size)
    nmax = max(int(n.max(initial=1)), 1)
    if epochs is not None:
        spe = math.ceil(nmax / B)
        perms = _perms(rng, n, epochs)                       # [E, P, nmax]
        pos = np.arange(spe * B)
        valid = pos[None, :] < n[:, None]                     # [P, spe*B]
        idx = perms[:, :, np.minimum(pos, nmax - 1)]          # [E, P, spe*B]
        idx = idx.transpose(1, 0, 2).reshape(P, epochs * spe, B)
        mask = np.broadcast_to(valid[:, None, :], (P, epochs, spe * B)).reshape(P, -1, B)
        return idx, mask.copy()
    assert steps is not None
    b = np.minimum(B, np.maximum(n, 1))                       # per-client batch
    passes = max(1, math.ceil(steps * B / max(int(n.min(initial=1)), 1)))
    perms = _perms(rng, n, passes)                            # [passes, P, nmax]
    s = np.arange(steps)[None, :, None]
    j = np.arange(B)[None, None, :]
    k = s * b[:, None, None] + j                              # stream position
    nn = np.maximum(n, 1)[:, None, None]
    which, off = k // nn, k % nn
    mask = np.broadcast_to((j < b[:, None, None]) & (n[:, None, None] > 0), k.shape).copy()
    which = np.where(mask, which, 0)
    off = np.where(mask, off, 0)
    idx = perms[which, np.arange(P)[:, None, None], off]
    return idx, mask


def plan_round(config: ScaleConfig, counts: np.ndarray, round_no: int) -> RoundPlan:
    """The seeded plan of one round (identical for every engine)."""
    rng = np.random.default_rng([config.seed, 7919, round_no])
    C = len(counts)
    m = max(1, int(round(config.client_fraction * C)))
    sampled = np.sort(rng.choice(C, m, replace=False)) if m < C else np.arange(C)
    drop = min(int(math.floor(config.stragglers * m)), m - 1)
    if drop > 0:
        gone = rng.choice(m, drop, replace=False)
        keep = np.ones(m, dtype=bool)
        keep[gone] = False
        participants = sampled[keep]
    else:
        participants = sampled
    n = counts[participants]
    if config.algorithm == "reptile":
        idx, mask = local_schedule(rng, n, config.batch_size, steps=config.inner_steps)
    else:
        idx, mask = local_schedule(rng, n, config.batch_size, epochs=config.local_epochs)
    return RoundPlan(sampled, participants, idx, mask)


# --------------------------------------------------------------------------- results
@dataclass
class FedResult:
    """What one federated run produced: per-round history, final model state, adaptation."""

    history: list[dict[str, Any]]
    state: dict[str, Any]
    engine: str
    chunk_size: int
    adaptation: dict[str, Any] = field(default_factory=dict)
    round_seconds: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return float(self.history[-1]["accuracy"]) if self.history else float("nan")

    def load_into(self, model: Any) -> Any:
        """Copy the final global weights into ``model`` (returned)."""
        model.load_state_dict(self.state)
        return model


def per_client_bytes(model: Any, batch_size: int, input_numel: int) -> int:
    """Estimated working memory of one client inside a vmap chunk (bytes)."""
    import torch

    params = sum(p.numel() for p in model.parameters())
    acts = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            acts += mod.out_features
        elif isinstance(mod, torch.nn.Conv2d):
            acts += mod.out_channels * 64  # rough: a few spatial positions per channel
    acts = max(acts, 1) + input_numel
    # parameters: current, gradient, update, proximal anchor, aggregation; activations:
    # forward and backward copies.
    return 4 * (6 * params + 4 * batch_size * acts)


def _chunk_size(config: ScaleConfig, model: Any, input_numel: int, clients: int) -> int:
    if config.chunk_size:
        return max(1, min(config.chunk_size, clients))
    per = per_client_bytes(model, config.batch_size, input_numel)
    return max(1, min(clients, int(config.chunk_memory_mb * 2**20 // per)))


def _has_buffers(model: Any) -> bool:
    return any(True for _ in model.buffers())


# --------------------------------------------------------------------------- engines
class _Data:
    """Client data as padded tensors, built once per run."""

    def __init__(self, clients: ClientSet) -> None:
        import torch

        X, n = padded(clients.X_train, np.float32)
        y, _ = padded(clients.y_train, np.int64)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.n = n
        XL, nl = padded(clients.X_local, np.float32) if clients.X_local and max(
            len(a) for a in clients.X_local) else (None, np.zeros(len(n), dtype=np.int64))
        self.XL = None if XL is None else torch.from_numpy(XL)
        self.yL = None if XL is None else torch.from_numpy(padded(clients.y_local, np.int64)[0])
        self.nL = nl
        self.X_test = torch.from_numpy(np.ascontiguousarray(clients.X_test, dtype=np.float32))
        self.y_test = torch.from_numpy(np.asarray(clients.y_test, dtype=np.int64))


def _accuracy(model: Any, state: dict[str, Any], X: Any, y: Any) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    model.eval()
    with torch.no_grad():
        logits = torch.cat([functional_call(model, state, (X[i:i + 4096],))
                            for i in range(0, len(X), 4096)])
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
    return acc, loss


class _Vectorized:
    """All clients of a chunk trained at once: vmap(grad(loss)) over stacked parameters."""

    name = "vectorized"

    def __init__(self, model: Any, config: ScaleConfig, chunk: int) -> None:
        import torch.nn.functional as F
        from torch.func import functional_call, grad_and_value, vmap

        if _has_buffers(model):
            raise UnsupportedModelError(
                "The vectorised engine needs a model without buffers (e.g. no BatchNorm).")
        self.model, self.config, self.chunk = model, config, chunk

        def loss_fn(params, xb, yb, mb, anchor, mu):
            logits = functional_call(model, params, (xb,))
            ce = F.cross_entropy(logits, yb, reduction="none")
            loss = (ce * mb).sum() / mb.sum().clamp_min(1.0)
            if anchor is not None:
                prox = sum(((params[k] - anchor[k]) ** 2).sum() for k in params)
                loss = loss + 0.5 * mu * prox
            return loss

        self._step_prox = vmap(grad_and_value(loss_fn), in_dims=(0, 0, 0, 0, None, None),
                               randomness="different")
        self._step = vmap(grad_and_value(lambda p, x, y, m: loss_fn(p, x, y, m, None, 0.0)),
                          in_dims=(0, 0, 0, 0), randomness="different")
        self._forward = vmap(lambda p, x: functional_call(model, p, (x,)), in_dims=(0, 0))

    def local_train(self, start: dict[str, Any], X: Any, y: Any, idx: np.ndarray,
                    mask: np.ndarray, lr: float, mu: float = 0.0,
                    cb: Callbacks | None = None) -> tuple[dict[str, Any], float]:
        """Train ``len(X)`` clients from ``start`` along their schedules; returns their params."""
        import torch

        P, S, _ = idx.shape
        params = {k: v.detach().unsqueeze(0).expand(P, *v.shape).clone()
                  for k, v in start.items()}
        anchor = {k: v.detach() for k, v in start.items()} if mu > 0 else None
        rows = torch.arange(P)[:, None]
        idx_t, mask_t = torch.from_numpy(idx), torch.from_numpy(mask.astype(np.float32))
        losses = torch.zeros(P)
        self.model.train()
        for s in range(S):
            mb = mask_t[:, s]
            active = mb.sum(1) > 0
            if not bool(active.any()):
                continue
            xb, yb = X[rows, idx_t[:, s]], y[rows, idx_t[:, s]]
            if anchor is not None:
                grads, loss = self._step_prox(params, xb, yb, mb, anchor, mu)
            else:
                grads, loss = self._step(params, xb, yb, mb)
            scale = (lr * active.float())
            with torch.no_grad():
                for k in params:
                    params[k] = params[k] - scale.view(-1, *[1] * (params[k].dim() - 1)) * grads[k]
            losses = torch.where(active, loss.detach(), losses)
            if cb is not None and s % 8 == 7:
                cb.check()
        return params, float(losses.mean())

    def correct(self, params: dict[str, Any], X: Any, y: Any, n: np.ndarray) -> np.ndarray:
        """Per-client count of correct predictions on their first ``n`` rows."""
        import torch

        self.model.eval()
        with torch.no_grad():
            pred = self._forward(params, X).argmax(-1)
        valid = torch.arange(X.shape[1])[None, :] < torch.from_numpy(n)[:, None]
        return ((pred == y) & valid).sum(1).numpy()


class _Loop:
    """The reference: one client after another, a torch module and torch.optim.SGD each."""

    name = "loop"

    def __init__(self, model: Any, config: ScaleConfig, chunk: int) -> None:
        self.model, self.config, self.chunk = copy.deepcopy(model), config, chunk

    def local_train(self, start: dict[str, Any], X: Any, y: Any, idx: np.ndarray,
                    mask: np.ndarray, lr: float, mu: float = 0.0,
                    cb: Callbacks | None = None) -> tuple[dict[str, Any], float]:
        import torch
        import torch.nn.functional as F

        net = self.model
        out: dict[str, list[Any]] = {k: [] for k in start}
        losses = []
        for i in range(len(X)):
            net.load_state_dict(start, strict=False)
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            last = 0.0
            for s in range(idx.shape[1]):
                rows = idx[i, s][mask[i, s]]
                if len(rows) == 0:
                    continue
                rows_t = torch.from_numpy(rows)
                loss = F.cross_entropy(net(X[i][rows_t]), y[i][rows_t])
                if mu > 0:
                    loss = loss + 0.5 * mu * sum(
                        ((p - start[k].detach()) ** 2).sum() for k, p in net.named_parameters())
                opt.zero_grad()
                loss.backward()
                opt.step()
                last = float(loss.detach())
            losses.append(last)
            for k, v in net.state_dict().items():
                if k in out:
                    out[k].append(v.detach().clone())
            if cb is not None:
                cb.check()
        return {k: torch.stack(v) for k, v in out.items()}, float(np.mean(losses))

    def correct(self, params: dict[str, Any], X: Any, y: Any, n: np.ndarray) -> np.ndarray:
        import torch

        net = self.model
        net.eval()
        out = np.zeros(len(X), dtype=np.int64)
        with torch.no_grad():
            for i in range(len(X)):
                net.load_state_dict({k: v[i] for k, v in params.items()}, strict=False)
                k = int(n[i])
                if k:
                    out[i] = int((net(X[i][:k]).argmax(1) == y[i][:k]).sum())
        return out


def _trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def run_federated(
    model: Any,
    clients: ClientSet,
    config: ScaleConfig,
    *,
    engine: str | None = None,
    model_bytes: int | None = None,
    callbacks: Callbacks | None = None,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> FedResult:
    """Run ``config.rounds`` federated rounds of ``config.algorithm`` over ``clients``.

    ``model`` gives the architecture and the initial global weights (it is not modified).
    ``engine`` is ``"vectorized"`` or ``"loop"`` (default: the config's). ``model_bytes`` is
    the serialized size of the model that travels (default: its safetensors bytes).
    """
    import torch

    cb = Callbacks.ensure(callbacks)
    engine = engine or config.engine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared CPU; many small ops gain nothing from more
    try:
        return _run(model, clients, config, engine, model_bytes, cb, progress)
    finally:
        torch.set_num_threads(threads)


def _split_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The averaged state (trainable parameters and floating buffers, e.g. BatchNorm
    statistics) and the buffers that stay fixed (integer ones)."""
    state = _trainable_state(model)
    buffers = {}
    for k, v in model.named_buffers():
        if v.is_floating_point():
            state[k] = v.detach().clone()
        else:
            buffers[k] = v.detach().clone()
    return state, buffers


def _weighted_mean(impl: Any, state: dict[str, Any], data: _Data, plan: Any, counts: Any,
                   chunk: int, lr: float, mu: float, cb: Callbacks
                   ) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """Train the round's participants chunk by chunk from ``state``; the row-count-weighted
    mean of their parameters and each chunk's (loss, clients)."""
    import torch

    parts = plan.participants
    weights = torch.from_numpy(counts.astype(np.float64))
    total_w = float(weights.sum())
    acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in state.items()}
    losses = []
    for c0 in range(0, len(parts), chunk):
        ids = torch.from_numpy(parts[c0:c0 + chunk])
        sl = slice(c0, c0 + chunk)
        params, loss = impl.local_train(state, data.X[ids], data.y[ids], plan.index[sl],
                                        plan.mask[sl], lr, mu, cb)
        losses.append((loss, len(ids)))
        w = weights[c0:c0 + chunk]
        for k in acc:
            acc[k] += torch.tensordot(w, params[k].double(), dims=1)
        del params
    return {k: (v / total_w).float() for k, v in acc.items()}, losses


def _run(model: Any, clients: ClientSet, config: ScaleConfig, engine: str,
         model_bytes: int | None, cb: Callbacks,
         progress: Callable[[int, dict[str, Any]], None] | None) -> FedResult:
    from core.measure import serialized_size

    model = copy.deepcopy(model).float()
    warnings: list[str] = []
    if engine == "vectorized" and _has_buffers(model):
        warnings.append("The model has buffers (e.g. BatchNorm running statistics), which the "
                        "vectorised engine does not handle; the per-client loop was used.")
        engine = "loop"
    if engine not in ("vectorized", "loop"):
        raise UnsupportedModelError(f"run_federated runs the built-in engines, not '{engine}'.")
    data = _Data(clients)
    input_numel = int(np.prod(clients.input_shape))
    chunk = _chunk_size(config, model, input_numel, clients.num_clients)
    impl = (_Vectorized if engine == "vectorized" else _Loop)(model, config, chunk)
    size = int(model_bytes if model_bytes is not None else serialized_size(model))
    state, buffers = _split_state(model)
    counts = data.n
    algo = config.algorithm
    lr = config.inner_lr if algo == "reptile" else config.lr
    mu = config.mu if algo == "fedprox" else 0.0
    history: list[dict[str, Any]] = []
    round_seconds: list[float] = []
    for r in range(1, config.rounds + 1):
        cb.check()
        t0 = time.perf_counter()
        plan = plan_round(config, counts, r)
        parts = plan.participants
        mean, losses = _weighted_mean(impl, state, data, plan, counts[parts], chunk, lr, mu, cb)
        if algo == "reptile":
            state = {k: state[k] + config.outer_lr * (mean[k] - state[k]) for k in state}
        else:
            state = mean
        seconds = time.perf_counter() - t0
        round_seconds.append(seconds)
        full = {**state, **buffers}
        accuracy, test_loss = _accuracy(impl.model, full, data.X_test, data.y_test)
        row = {
            "round": r, "accuracy": accuracy, "test_loss": test_loss,
            "train_loss": float(sum(v * n for v, n in losses) / max(len(parts), 1)),
            "sampled": int(len(plan.sampled)), "participants": int(len(parts)),
            "stragglers": int(len(plan.sampled) - len(parts)),
            "bytes_down": size * int(len(plan.sampled)), "bytes_up": size * int(len(parts)),
            "seconds": seconds,
        }
        history.append(row)
        if progress is not None:
            progress(r, row)
    result = FedResult(history, {**state, **buffers}, impl.name, chunk,
                       round_seconds=round_seconds, warnings=warnings)
    result.adaptation = _adaptation(impl, state, data, config, cb)
    return result


def _adaptation(impl: Any, state: dict[str, Any], data: _Data, config: ScaleConfig,
                cb: Callbacks) -> dict[str, Any]:
    """Clients' accuracy on their own held-out rows, before and after ``adapt_steps``."""
    import torch

    if data.XL is None or int(data.nL.sum()) == 0:
        return {}
    rng = np.random.default_rng([config.seed, 104729])
    steps = config.adapt_steps
    C = len(data.n)
    before = after = 0
    for c0 in range(0, C, impl.chunk):
        ids = np.arange(c0, min(C, c0 + impl.chunk))
        it = torch.from_numpy(ids)
        base = {k: v.unsqueeze(0).expand(len(ids), *v.shape) for k, v in state.items()}
        before += int(impl.correct(base, data.XL[it], data.yL[it], data.nL[ids]).sum())
        if steps:
            idx, mask = local_schedule(rng, data.n[ids], config.batch_size, steps=steps)
            params, _ = impl.local_train(state, data.X[it], data.y[it], idx, mask,
                                         config.inner_lr, 0.0, cb)
            after += int(impl.correct(params, data.XL[it], data.yL[it], data.nL[ids]).sum())
    total = int(data.nL.sum())
    out = {"local_accuracy": before / total, "adapt_steps": steps, "local_rows": total}
    out["adapted_accuracy"] = after / total if steps else before / total
    return out
