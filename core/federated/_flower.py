"""The same experiment on Flower's simulation engine (optional extra ``flwr[simulation]``).

Same partitions, model, algorithm and seeded round plans as the built-in engines: every
client is offered the model each round; the clients the plan did not sample, and its
stragglers, answer with zero examples, so the same clients as in the built-in engines are
aggregated. Local training is the loop reference's (torch SGD on the planned batches).

Pointing it at a real deployment: the ``ClientApp``/``ServerApp`` built here are ordinary
Flower apps. Put ``make_apps(...)`` behind a Flower app project (``flwr new``), run a
SuperLink on the server machine, one SuperNode per device (``flower-supernode
--superlink HOST:9092``) with ``partition-id``/``num-partitions`` in its node config, and
start it with ``flwr run . <federation>``; each SuperNode then trains on its own data.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.errors import StudioError
from core.federated._clients import ClientSet
from core.federated._config import ScaleConfig

INSTALL = ('The Flower engine needs the optional extra: pip install "flwr[simulation]" '
           '(or pip install -e ".[flower]"). Use --engine builtin otherwise.')


class MissingExtraError(StudioError):
    """An optional dependency is not installed."""


def _import_flwr() -> Any:
    try:
        import flwr  # noqa: F401
        from flwr.simulation import run_simulation  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL} ({exc})") from None
    import flwr

    return flwr


def make_apps(model: Any, clients: ClientSet, config: ScaleConfig, *,
              on_round: Callable[[int, list[np.ndarray]], None]) -> tuple[Any, Any]:
    """``(server_app, client_app)`` running ``config`` over ``clients`` with Flower."""
    import torch
    import torch.nn.functional as F
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg

    from core.federated._engine import plan_round

    keys = list(model.state_dict())
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    counts = clients.counts
    algo = config.algorithm
    lr = config.inner_lr if algo == "reptile" else config.lr
    mu = config.mu if algo == "fedprox" else 0.0
    net = copy.deepcopy(model).float()

    def set_weights(arrays: list[np.ndarray]) -> dict[str, Any]:
        state = {k: torch.from_numpy(np.asarray(a)).to(dtypes[k]) for k, a in zip(keys, arrays)}
        net.load_state_dict(state)
        return state

    class Client(NumPyClient):
        def __init__(self, cid: int) -> None:
            self.cid = cid

        def fit(self, parameters, fit_config):
            torch.set_num_threads(1)
            plan = plan_round(config, counts, int(fit_config["round"]))
            where = np.flatnonzero(plan.participants == self.cid)
            if len(where) == 0:  # not sampled, or a straggler: contributes nothing
                return parameters, 0, {"skipped": 1}
            pos = int(where[0])
            start = set_weights(parameters)
            X = torch.from_numpy(clients.X_train[self.cid])
            y = torch.from_numpy(clients.y_train[self.cid])
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            net.train()
            for s in range(plan.index.shape[1]):
                rows = plan.index[pos, s][plan.mask[pos, s]]
                if len(rows) == 0:
                    continue
                rows_t = torch.from_numpy(rows)
                loss = F.cross_entropy(net(X[rows_t]), y[rows_t])
                if mu > 0:
                    loss = loss + 0.5 * mu * sum(((p - start[k].detach()) ** 2).sum()
                                                 for k, p in net.named_parameters())
                opt.zero_grad()
                loss.backward()
                opt.step()
            out = [v.detach().numpy().copy() for v in net.state_dict().values()]
            return out, int(counts[self.cid]), {}

    def client_fn(context: Context):
        return Client(int(context.node_config["partition-id"])).to_client()

    class Strategy(FedAvg):
        """FedAvg; for Reptile the server moves ``outer_lr`` of the way to the clients' mean."""

        current: list[np.ndarray] | None = None

        def aggregate_fit(self, server_round, results, failures):
            params, metrics = super().aggregate_fit(server_round, results, failures)
            if params is not None and algo == "reptile" and self.current is not None:
                mean = parameters_to_ndarrays(params)
                new = [c + config.outer_lr * (m - c) for c, m in zip(self.current, mean)]
                params = ndarrays_to_parameters(new)
            if params is not None:
                self.current = parameters_to_ndarrays(params)
            return params, metrics

    initial = [v.detach().numpy().copy() for v in model.state_dict().values()]

    def evaluate_fn(server_round, arrays, _cfg):
        if server_round > 0:
            on_round(server_round, arrays)
        return None

    def server_fn(context: Context):
        strategy = Strategy(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients.num_clients,
            min_available_clients=clients.num_clients, min_evaluate_clients=0,
            accept_failures=True, initial_parameters=ndarrays_to_parameters(initial),
            on_fit_config_fn=lambda r: {"round": r}, evaluate_fn=evaluate_fn)
        strategy.current = [a.copy() for a in initial]
        return ServerAppComponents(strategy=strategy,
                                   config=ServerConfig(num_rounds=config.rounds))

    return ServerApp(server_fn=server_fn), ClientApp(client_fn=client_fn)


def run_flower(model: Any, clients: ClientSet, config: ScaleConfig, *,
               model_bytes: int | None = None, callbacks: Callbacks | None = None,
               progress: Callable[[int, dict[str, Any]], None] | None = None) -> Any:
    """Run the experiment through ``flwr.simulation.run_simulation`` (Ray backend)."""
    _import_flwr()
    import logging

    import torch
    from flwr.simulation import run_simulation

    from core.federated._engine import (
        FedResult,
        _accuracy,
        _adaptation,
        _Data,
        _Loop,
        plan_round,
    )
    from core.measure import serialized_size

    cb = Callbacks.ensure(callbacks)
    model = copy.deepcopy(model).float()
    size = int(model_bytes if model_bytes is not None else serialized_size(model))
    data = _Data(clients)
    keys = list(model.state_dict())
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    history: list[dict[str, Any]] = []
    seconds: list[float] = []
    final: dict[str, Any] = {}
    clock = [time.perf_counter()]

    def on_round(r: int, arrays: list[np.ndarray]) -> None:
        now = time.perf_counter()
        seconds.append(now - clock[0])
        state = {k: torch.from_numpy(np.asarray(a)).to(dtypes[k]) for k, a in zip(keys, arrays)}
        final.clear()
        final.update(state)
        acc, loss = _accuracy(model, state, data.X_test, data.y_test)
        plan = plan_round(config, data.n, r)
        row = {"round": r, "accuracy": acc, "test_loss": loss, "train_loss": float("nan"),
               "sampled": int(len(plan.sampled)), "participants": int(len(plan.participants)),
               "stragglers": int(len(plan.sampled) - len(plan.participants)),
               "bytes_down": size * int(len(plan.sampled)),
               "bytes_up": size * int(len(plan.participants)), "seconds": seconds[-1]}
        history.append(row)
        if progress is not None:
            progress(r, row)
        clock[0] = time.perf_counter()

    server_app, client_app = make_apps(model, clients, config, on_round=on_round)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"include_dashboard": False, "logging_level": "ERROR",
                             "log_to_driver": False}}
    cb.check()
    clock[0] = time.perf_counter()
    run_simulation(server_app=server_app, client_app=client_app,
                   num_supernodes=clients.num_clients, backend_config=backend)
    if len(history) != config.rounds:
        raise StudioError(f"The Flower simulation finished {len(history)} of {config.rounds} "
                          "rounds; see the Flower log above.")
    impl = _Loop(model, config, max(1, clients.num_clients))
    trainable = {k: v for k, v in final.items() if v.is_floating_point()}
    result = FedResult(history, final, "flower", clients.num_clients, round_seconds=seconds,
                       warnings=["Flower timings include Ray's start-up and scheduling; the "
                                 "first round carries the start-up."])
    result.adaptation = _adaptation(impl, trainable, data, config, cb)
    return result
