"""The same experiment on Flower's Message API (optional extra ``flwr[simulation]``).

Same partitions, model, algorithm and seeded round plans as the built-in engines. The
``ServerApp`` asks every SuperNode once which partition it holds, then each round sends the
global ``ArrayRecord`` only to the clients the plan sampled; the plan's stragglers answer with
an error reply (they dropped out), the others train the loop reference's way (torch SGD on
the planned batches) and reply with their floating-point state and row count. Flower's
message-based ``FedAvg`` averages the replies weighted by ``num-examples``; for Reptile the
server then moves ``outer_lr`` of the way to that mean. Integer buffers stay as they started,
as in the built-in engines.

Pointing it at a real deployment: the ``ClientApp``/``ServerApp`` built here are ordinary
Flower apps. Put ``make_apps(...)`` behind a Flower app project (``flwr new``), run a
SuperLink on the server machine, one SuperNode per device (``flower-supernode
--superlink HOST:9092``) with ``partition-id``/``num-partitions`` in its node config, and
start it with ``flwr run . <federation>``; each SuperNode then trains on its own data.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.errors import StudioError
from core.federated._clients import ClientSet
from core.federated._config import ScaleConfig

INSTALL = ('The Flower engine needs the optional extra: pip install "flwr[simulation]>=1.22,<2" '
           '(or pip install -e ".[flower]"). Use --engine builtin otherwise.')
STRAGGLER = "dropped out of this round (a straggler in the seeded plan)"
NODE_WAIT_S = 120.0  # how long the ServerApp waits for every SuperNode to connect
OnRound = Callable[[int, dict[str, Any], float], None]  # (round, global state, train loss)


class MissingExtraError(StudioError):
    """An optional dependency is not installed."""


def _import_flwr() -> Any:
    try:
        import flwr
        from flwr.app import ArrayRecord  # noqa: F401  (the Message API's records: >= 1.22)
        from flwr.serverapp.strategy import FedAvg  # noqa: F401
        from flwr.simulation import run_simulation  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL} ({exc})") from None
    return flwr


@dataclass(frozen=True)
class _Job:
    """What every app needs; pickled to the simulation's workers with the ClientApp."""

    model: Any
    clients: ClientSet
    config: ScaleConfig

    @property
    def lr(self) -> float:
        return self.config.inner_lr if self.config.algorithm == "reptile" else self.config.lr

    @property
    def mu(self) -> float:
        return self.config.mu if self.config.algorithm == "fedprox" else 0.0


def _floating_state(model: Any) -> dict[str, Any]:
    """The averaged part of a model's state (parameters and floating buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def local_train(job: _Job, cid: int, start: dict[str, Any], round_no: int
                ) -> tuple[dict[str, Any], float] | None:
    """Client ``cid``'s planned local training from ``start``: (state, last loss), or
    ``None`` when the plan has it drop out this round. The loop reference's steps."""
    import torch
    import torch.nn.functional as F

    from core.federated._engine import plan_round

    plan = plan_round(job.config, job.clients.counts, round_no)
    where = np.flatnonzero(plan.participants == cid)
    if len(where) == 0:
        return None
    pos = int(where[0])
    net = job.model
    net.load_state_dict(start, strict=False)
    X = torch.from_numpy(np.ascontiguousarray(job.clients.X_train[cid], dtype=np.float32))
    y = torch.from_numpy(np.asarray(job.clients.y_train[cid], dtype=np.int64))
    opt = torch.optim.SGD(net.parameters(), lr=job.lr)
    net.train()
    last = 0.0
    for s in range(plan.index.shape[1]):
        rows = torch.from_numpy(plan.index[pos, s][plan.mask[pos, s]])
        if len(rows) == 0:
            continue
        loss = F.cross_entropy(net(X[rows]), y[rows])
        if job.mu > 0:
            loss = loss + 0.5 * job.mu * sum(((p - start[k].detach()) ** 2).sum()
                                             for k, p in net.named_parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = float(loss.detach())
    return _floating_state(net), last


def _client_app(job: _Job) -> Any:
    """A ``ClientApp`` that says which partition it holds and trains on it."""
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def partition(msg: Message, context: Any) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"node": ConfigRecord({"partition-id": pid})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Any) -> Message:
        torch.set_num_threads(1)
        cid = int(context.node_config["partition-id"])
        start = msg.content["arrays"].to_torch_state_dict()
        out = local_train(job, cid, start, int(msg.content["config"]["server-round"]))
        if out is None:
            return Message(Error(code=0, reason=STRAGGLER), reply_to=msg)
        state, loss = out
        metrics = MetricRecord({"num-examples": int(job.clients.counts[cid]),
                                "partition-id": cid, "train-loss": loss})
        return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}),
                       reply_to=msg)

    return app


def _mean_train_loss(records: list[Any], _weight_key: str) -> Any:
    """The participants' last local loss, unweighted (as the built-in engines report it)."""
    from flwr.app import MetricRecord

    losses = [float(r["metrics"]["train-loss"]) for r in records]
    return MetricRecord({"train-loss": float(np.mean(losses)) if losses else float("nan")})


def _partition_nodes(grid: Any, count: int) -> dict[int, int]:
    """``{partition id: node id}`` of the ``count`` SuperNodes, asked once (a QUERY)."""
    from flwr.app import Message, MessageType, RecordDict

    deadline = time.monotonic() + NODE_WAIT_S
    while len(nodes := list(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} Flower SuperNodes connected")
        time.sleep(0.2)
    asks = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
    found = {}
    for reply in grid.send_and_receive(asks):
        if reply.has_error():
            raise RuntimeError(f"a SuperNode did not say its partition: {reply.error.reason}")
        found[int(reply.content["node"]["partition-id"])] = reply.metadata.src_node_id
    return found


def _strategy(job: _Job, nodes: dict[int, int]) -> Any:
    """Flower's message-based FedAvg over the plan's clients (Reptile: a server step)."""
    from flwr.app import ArrayRecord, Message, MessageType, RecordDict
    from flwr.serverapp.strategy import FedAvg

    from core.federated._engine import plan_round

    config = job.config

    class PlannedFedAvg(FedAvg):
        current: ArrayRecord | None = None
        train_loss = float("nan")

        def configure_train(self, server_round, arrays, train_config, grid):
            self.current = arrays
            train_config["server-round"] = server_round
            record = RecordDict({"arrays": arrays, "config": train_config})
            sampled = plan_round(config, job.clients.counts, server_round).sampled
            return [Message(record, dst_node_id=nodes[int(c)], message_type=MessageType.TRAIN)
                    for c in sampled]

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            _check_replies(replies, plan_round(config, job.clients.counts, server_round))
            arrays, metrics = super().aggregate_train(server_round, replies)
            if config.algorithm == "reptile" and arrays is not None:
                old = self.current.to_torch_state_dict()
                mean = arrays.to_torch_state_dict()
                arrays = ArrayRecord({k: old[k] + config.outer_lr * (mean[k] - old[k])
                                      for k in mean})
            self.train_loss = float(metrics["train-loss"]) if metrics else float("nan")
            return arrays, metrics

    return PlannedFedAvg(fraction_evaluate=0.0, min_available_nodes=len(nodes),
                         train_metrics_aggr_fn=_mean_train_loss)


def _check_replies(replies: list[Any], plan: Any) -> None:
    """Exactly the plan's participants answered; any other failure stops the run loudly."""
    answered = {int(m.content["metrics"]["partition-id"]) for m in replies if not m.has_error()}
    if answered == {int(c) for c in plan.participants}:
        return
    reasons = {m.error.reason for m in replies if m.has_error()} - {STRAGGLER}
    missing = sorted({int(c) for c in plan.participants} - answered)
    raise RuntimeError(f"clients {missing} sent no update: {'; '.join(sorted(reasons)) or '?'}")


def _server_app(job: _Job, on_round: OnRound) -> Any:
    """A ``ServerApp`` running ``job.config.rounds`` planned rounds; ``on_round(r, state,
    train_loss)`` sees the global floating-point state after each."""
    from flwr.app import ArrayRecord
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        strategy = _strategy(job, _partition_nodes(grid, job.clients.num_clients))

        def evaluate(server_round: int, arrays: Any) -> None:
            if server_round > 0:
                on_round(server_round, arrays.to_torch_state_dict(), strategy.train_loss)

        strategy.start(grid=grid, initial_arrays=ArrayRecord(_floating_state(job.model)),
                       num_rounds=job.config.rounds, evaluate_fn=evaluate)

    return app


def make_apps(model: Any, clients: ClientSet, config: ScaleConfig, *,
              on_round: OnRound) -> tuple[Any, Any]:
    """``(server_app, client_app)`` running ``config`` over ``clients`` with Flower."""
    job = _Job(copy.deepcopy(model).float(), clients, config)
    return _server_app(job, on_round), _client_app(job)


def _round_row(r: int, plan: Any, size: int, scores: tuple[float, float, float],
               seconds: float) -> dict[str, Any]:
    accuracy, test_loss, train_loss = scores
    return {"round": r, "accuracy": accuracy, "test_loss": test_loss,
            "train_loss": train_loss, "sampled": int(len(plan.sampled)),
            "participants": int(len(plan.participants)),
            "stragglers": int(len(plan.sampled) - len(plan.participants)),
            "bytes_down": size * int(len(plan.sampled)),
            "bytes_up": size * int(len(plan.participants)), "seconds": seconds}


def run_flower(model: Any, clients: ClientSet, config: ScaleConfig, *,
               model_bytes: int | None = None, callbacks: Callbacks | None = None,
               progress: Callable[[int, dict[str, Any]], None] | None = None) -> Any:
    """Run the experiment through ``flwr.simulation.run_simulation`` (Ray backend)."""
    _import_flwr()
    import logging

    from flwr.simulation import run_simulation

    from core.federated._engine import FedResult, _accuracy, _adaptation, _Data, _Loop, plan_round
    from core.measure import serialized_size

    cb = Callbacks.ensure(callbacks)
    model = copy.deepcopy(model).float()
    size = int(model_bytes if model_bytes is not None else serialized_size(model))
    data = _Data(clients)
    fixed = {k: v.clone() for k, v in model.state_dict().items() if not v.is_floating_point()}
    history: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    clock = [time.perf_counter()]

    def on_round(r: int, state: dict[str, Any], train_loss: float) -> None:
        seconds = time.perf_counter() - clock[0]
        final.clear()
        final.update(state)
        acc, loss = _accuracy(model, {**state, **fixed}, data.X_test, data.y_test)
        history.append(_round_row(r, plan_round(config, data.n, r), size,
                                  (acc, loss, train_loss), seconds))
        if progress is not None:
            progress(r, history[-1])
        clock[0] = time.perf_counter()

    server_app, client_app = make_apps(model, clients, config, on_round=on_round)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"include_dashboard": False, "logging_level": "ERROR",
                             "log_to_driver": False}}
    cb.check()
    clock[0] = time.perf_counter()
    try:
        run_simulation(server_app=server_app, client_app=client_app,
                       num_supernodes=clients.num_clients, backend_config=backend)
    except RuntimeError as exc:  # Ray could not start, or a round failed (its log says why)
        raise StudioError(f"The Flower simulation stopped after {len(history)} of "
                          f"{config.rounds} rounds: {exc} ({exc.__cause__ or 'see the log'})"
                          ) from exc
    if len(history) != config.rounds:
        raise StudioError(f"The Flower simulation finished {len(history)} of {config.rounds} "
                          "rounds; see the Flower log above.")
    impl = _Loop(model, config, max(1, clients.num_clients))
    result = FedResult(history, {**final, **fixed}, "flower", clients.num_clients,
                       round_seconds=[h["seconds"] for h in history],
                       warnings=["Flower timings include Ray's start-up and scheduling; the "
                                 "first round carries the start-up."])
    result.adaptation = _adaptation(impl, final, data, config, cb)
    return result
