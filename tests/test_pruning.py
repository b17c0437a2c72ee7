"""Pruning: a contract suite over every registered method, schedules, bad input, warnings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InvalidParameterError, StudioError, UnsupportedModelError
from core.registry import list_methods
from tests.helpers import onnx_zoo

FAST = {"budget_s": 0.02, "memory": False}
METHODS = list_methods("pruning")
_SKIP = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _saved_weights(run_dir: Path) -> dict[str, np.ndarray]:
    """The saved weights, decoded here independently of core (safetensors or the sparse npz)."""
    if (run_dir / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        return load_file(str(run_dir / "model.safetensors"))
    out = {}
    with np.load(run_dir / "model.sparse.npz", allow_pickle=False) as npz:
        for key in npz.files:
            name, kind = key.split("::")
            if kind == "dense":
                out[name] = npz[key]
            elif kind == "mask":
                shape = tuple(npz[name + "::shape"])
                bits = np.unpackbits(npz[key])[: int(np.prod(shape))].astype(bool)
                arr = np.zeros(bits.size, np.float32)
                arr[bits] = npz[name + "::values"]
                out[name] = arr.reshape(shape)
    return out


def _count(weights: dict[str, np.ndarray]) -> tuple[int, int]:
    live = [w for k, w in weights.items() if not k.endswith(_SKIP) and w.dtype.kind == "f"]
    return sum(w.size for w in live), sum(int(np.count_nonzero(w)) for w in live)


def _run(source, digits, tmp_path, name="p", **cfg):
    from core.pruning import PruningConfig, prune

    cfg.setdefault("finetune_epochs", 1)
    return prune(source, None if isinstance(source, Path) and source.is_dir() else digits,
                 PruningConfig(**cfg), out_dir=tmp_path / name, measure_options=FAST)


def test_every_method_is_registered():
    assert set(METHODS) == {
        "structured-l1", "structured-l2", "structured-taylor", "structured-random",
        "l1-unstructured",
        "global-magnitude", "random-unstructured", "taylor-unstructured", "movement"}


@pytest.mark.parametrize("method", METHODS)
def test_method_contract(method, baseline_dir, digits, tmp_path):
    """Artifact loads; params/non-zero counted from the saved weights equal the report; the
    report equals an independent re-measurement; the input run folder is untouched."""
    from core.artifacts import load_model, read_report
    from core.measure import evaluate, measure, ort_session

    before = _digest(baseline_dir)
    result = _run(baseline_dir, digits, tmp_path, method=method, sparsity=0.5)
    out, report = result.run_dir, result.report
    assert _digest(baseline_dir) == before
    assert not (tmp_path / "p.partial").exists()
    assert read_report(out) == json.loads(json.dumps(report))
    assert report["operation"] == "prune" and report["method"] == method
    assert report["parent"] == baseline_dir.name

    loaded = load_model(out)
    assert loaded.kind == "builtin"
    weights = _saved_weights(out)
    params, nonzero = _count(weights)
    res, base = report["result"], report["baseline"]
    assert (res["params"], res["nonzero_params"]) == (params, nonzero)
    # structured: the deployable model.onnx is the size (safetensors listed separately);
    # unstructured: the compact sparse weights are the download
    artifact = out / ("model.onnx" if method.startswith("structured") else "model.sparse.npz")
    assert res["size_bytes"] == artifact.stat().st_size
    if method.startswith("structured"):
        formats = report["pruning"]["formats_bytes"]
        assert formats == {"onnx": artifact.stat().st_size,
                           "safetensors": (out / "model.safetensors").stat().st_size}
        assert base["size_bytes"] == (baseline_dir / "model.onnx").stat().st_size
    assert res["accuracy"] == pytest.approx(evaluate(loaded.model, digits, "test").accuracy)
    again = measure(loaded.model, digits, files=[artifact], **FAST)
    assert (again.params, again.nonzero_params, again.size_bytes) == \
        (res["params"], res["nonzero_params"], res["size_bytes"])
    assert again.accuracy == pytest.approx(res["accuracy"])

    # model.onnx is the same model
    sess = ort_session(out / "model.onnx")
    X = digits.X_test[:32]
    with torch.no_grad():
        ref = loaded.model(torch.from_numpy(X)).numpy()
    assert np.abs(sess.run(None, {"input": X})[0] - ref).max() < 1e-3

    layers = {row["layer"]: row for row in report["pruning"]["layers"]}
    assert set(layers) >= {"features.0", "features.4", "classifier"}
    if method.startswith("structured"):
        # channels really removed: 16 -> 8, 32 -> 16; the classifier keeps its 10 outputs
        assert json.loads((out / "model.json").read_text())["kwargs"]["channels"] == [8, 16]
        assert layers["features.0"]["width_after"] == 8
        assert layers["classifier"]["width_after"] == 10
        assert params == nonzero and params < 0.35 * base["params"]
        assert report["pruning"]["materialise_max_abs_diff"] < 1e-4
    else:
        w = [v for k, v in weights.items() if k.endswith("weight") and v.ndim >= 2]
        zeros = sum(int((v == 0).sum()) for v in w) / sum(v.size for v in w)
        assert zeros == pytest.approx(0.5, abs=0.01)
        assert params == base["params"] and nonzero < 0.6 * base["nonzero_params"]
        assert res["size_bytes"] < base["size_bytes"]
        assert any("no speed-up by itself" in w and "still multiply the zeros" in w
                   for w in report["warnings"])
        rows = report["pruning"]["layers"]
        assert sum(r["nonzero_after"] for r in rows) < 0.6 * sum(r["params_before"] for r in rows)
        assert all(0 < r["sparsity"] < 1 for r in rows)


def test_cubic_schedule_and_gradual_run(digits, tmp_path):
    from core.models import model_for_data
    from core.pruning import PruningConfig, cubic_schedule

    sched = cubic_schedule(0.8, 4)
    assert sched[0] == 0 and sched[-1] == pytest.approx(0.8)
    assert all(b > a for a, b in zip(sched, sched[1:]))
    assert sched[1] - sched[0] > sched[-1] - sched[-2]  # cubic: fast first, slow last
    assert PruningConfig(schedule="gradual", steps=4, sparsity=0.8).targets() == sched[1:]
    assert PruningConfig(sparsity=0.8).targets() == [0.8]

    seen: list[dict] = []
    from core.callbacks import Callbacks

    net = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[64, 32])
    from core.pruning import prune

    result = prune(net, digits, PruningConfig(method="structured-l1", sparsity=0.6,
                                              schedule="gradual", steps=3, finetune_epochs=1),
                   out_dir=tmp_path / "g", measure_options=FAST,
                   callbacks=Callbacks(on_metrics=seen.append))
    hist = result.report["pruning"]["history"]
    assert [h["step"] for h in hist] == [0, 1, 2, 3]
    assert [h["sparsity"] for h in hist[1:]] == pytest.approx(cubic_schedule(0.6, 3)[1:])
    assert all(b["params"] < a["params"] for a, b in zip(hist, hist[1:]))
    assert [m["step"] for m in seen if m.get("phase") == "step"] == [1, 2, 3]
    spec = json.loads((result.run_dir / "model.json").read_text())
    assert spec["family"] == "mlp"
    assert spec["kwargs"]["hidden_dims"] == [int(64 * 0.4), int(32 * 0.4)]


def test_vit_heads_and_dims_are_removed(digits, tmp_path):
    from core.artifacts import load_model
    from core.models import model_for_data

    net = model_for_data("vit", digits.input_shape, digits.num_classes, dim=16, depth=1,
                         heads=4, head_dim=4, mlp_dim=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = _run(net, digits, tmp_path, method="structured-l2", sparsity=0.5,
                  finetune_epochs=0)
    kwargs = json.loads((result.run_dir / "model.json").read_text())["kwargs"]
    assert (kwargs["dim"], kwargs["heads"], kwargs["head_dim"], kwargs["mlp_dim"]) == \
        (8, 2, 4, 16)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
    loaded = load_model(result.run_dir)
    assert loaded.model.blocks[0].attn.num_heads == 2
    assert result.report["result"]["params"] < 0.35 * result.report["baseline"]["params"]


def test_round_to_and_ignore(digits, tmp_path):
    from core.models import model_for_data

    net = model_for_data("cnn", digits.input_shape, digits.num_classes, channels=[16, 32])
    result = _run(net, digits, tmp_path, method="structured-l1", sparsity=0.3, round_to=8,
                  ignore=("features.0",), finetune_epochs=0)
    kwargs = json.loads((result.run_dir / "model.json").read_text())["kwargs"]
    assert kwargs["channels"] == [16, 16]  # first conv ignored; 32·0.7 = 22 -> 16 (round_to 8)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2, 0.01, 0.99, float("nan"), "0.5", True])
def test_bad_sparsity_names_the_parameter(value):
    from core.pruning import PruningConfig

    with pytest.raises(InvalidParameterError, match="'sparsity'"):
        PruningConfig(sparsity=value)


@pytest.mark.parametrize("field,value", [
    ("method", "magic"), ("schedule", "weekly"), ("steps", 0), ("finetune_epochs", -1),
    ("round_to", 0), ("attention", "x"), ("ignore", "classifier")])
def test_bad_options_name_the_parameter(field, value):
    from core.pruning import PruningConfig

    with pytest.raises(InvalidParameterError, match=f"'{field}'"):
        PruningConfig(**{field: value})
    with pytest.raises(InvalidParameterError, match="'steps'"):
        PruningConfig(schedule="gradual", steps=1)
    with pytest.raises(InvalidParameterError, match="'finetune_epochs'"):
        PruningConfig(method="movement", finetune_epochs=0)


def test_ratio_removing_every_channel_is_refused(baseline_dir, digits, tmp_path):
    from core.models import model_for_data

    net = model_for_data("cnn", digits.input_shape, digits.num_classes, channels=[1, 16])
    with pytest.raises(InvalidParameterError, match="features.0"):
        _run(net, digits, tmp_path, method="structured-l2", sparsity=0.5)
    before = _digest(baseline_dir)
    with pytest.raises(InvalidParameterError, match="round_to"):
        _run(baseline_dir, digits, tmp_path, method="structured-l2", sparsity=0.5, round_to=16)
    assert _digest(baseline_dir) == before
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.partial").exists()


class _Shift(nn.Module):
    """Adds a fixed per-channel offset: a hard-coded width Torch-Pruning cannot see."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("offset", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset.view(1, -1, 1, 1)


class _UserNet(nn.Module):
    def __init__(self, shift: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.shift = _Shift(8) if shift else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.shift(self.conv(x)))).flatten(1))


def test_user_module_is_pruned_and_saved_portably(digits, tmp_path):
    from core.artifacts import load_model

    net = _UserNet()
    result = _run(net, digits, tmp_path, method="structured-l2", sparsity=0.5)
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"model.pt2", "model.onnx", "report.json"} <= files
    program = torch.export.load(str(result.run_dir / "model.pt2"))
    assert program.state_dict["conv.weight"].shape[0] == 4
    assert load_model(result.run_dir / "model.onnx").kind == "onnx"
    # the size is the deployable ONNX only; the .pt2 is listed separately, not added
    onnx_bytes = (result.run_dir / "model.onnx").stat().st_size
    assert result.report["result"]["size_bytes"] == onnx_bytes
    assert result.report["pruning"]["formats_bytes"]["torch.export"] == \
        (result.run_dir / "model.pt2").stat().st_size
    assert net.conv.weight.shape[0] == 8  # the caller's module is untouched


def test_untraceable_width_names_the_layer(digits, tmp_path):
    with pytest.raises(UnsupportedModelError, match="'shift'"):
        _run(_UserNet(shift=True), digits, tmp_path, method="structured-l1", sparsity=0.5)
    assert not (tmp_path / "p").exists()


def test_torchscript_inputs(baseline_dir, digits, tmp_path):
    from core.artifacts import load_model, trusted_model_code

    model = load_model(baseline_dir).model
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(model, torch.from_numpy(digits.X_test[:1])), str(path))
    with pytest.raises(UnsupportedModelError, match="unstructured"), trusted_model_code():
        _run(str(path), digits, tmp_path, method="structured-l2")
    from core.pruning import PruningConfig, prune

    with trusted_model_code():
        result = prune(str(path), digits, PruningConfig(method="global-magnitude",
                                                        sparsity=0.6, finetune_epochs=0),
                       out_dir=tmp_path / "ts", measure_options=FAST)
    res = result.report["result"]
    assert res["nonzero_params"] < 0.5 * res["params"]
    # TorchScript is deprecated: no model.pt is written; model.onnx is the deployable form
    assert (tmp_path / "ts" / "model.onnx").is_file()
    assert not (tmp_path / "ts" / "model.pt").exists()
    assert any("No model.pt" in w for w in result.report["warnings"])
    # the shipped file scores as reported, with ORT alone
    shipped = onnx_zoo.ort_accuracy(tmp_path / "ts", digits.X_test, digits.y_test)
    assert shipped == pytest.approx(res["accuracy"], abs=2 / len(digits.y_test))


def test_cli_prune(baseline_dir, tmp_path, capsys):
    from core.cli import run

    out = tmp_path / "cli"
    code = run(["prune", "--model", str(baseline_dir), "--method", "l1-unstructured",
                "--sparsity", "0.7", "--finetune-epochs", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["sparsity"] == 0.7 and report["method"] == "l1-unstructured"
    assert "report:" in capsys.readouterr().out
    errors: list[str] = []
    code = run(["prune", "--model", str(baseline_dir), "--sparsity", "1.5", "--out",
                str(tmp_path / "bad")], err=errors.append)
    assert code == 2 and "'sparsity'" in errors[0] and not (tmp_path / "bad").exists()


def test_facade_and_lazy_exports(digits, tmp_path):
    import core
    from core.models import model_for_data
    from core.pruning import prune_model

    assert core.prune is not None and core.prune_model is prune_model
    net = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[16])
    result = prune_model(net, digits, method="global-magnitude", sparsity=0.8,
                         finetune_epochs=0, out_dir=tmp_path / "f", measure_options=FAST)
    # the options reached the pruner: 80 % of the saved weight matrices' entries are zero
    from core.artifacts import load_model

    pruned = load_model(tmp_path / "f").model
    weights = [m.weight for m in pruned.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.8, abs=0.01)
    assert result.report["result"]["nonzero_params"] < 0.3 * result.report["result"]["params"]
    with pytest.raises(StudioError):
        prune_model(net, digits, method="nope", out_dir=tmp_path / "g")


def test_stop_mid_schedule_leaves_nothing(digits, tmp_path):
    from core.callbacks import Callbacks
    from core.errors import CancelledError
    from core.models import model_for_data
    from core.pruning import PruningConfig, prune

    cb = Callbacks()
    cb.on_metrics = lambda row: cb.cancel.cancel() if row.get("step") == 1 else None
    net = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[32])
    with pytest.raises(CancelledError):
        prune(net, digits, PruningConfig(method="structured-l1", schedule="gradual", steps=3),
              out_dir=tmp_path / "s", callbacks=cb, measure_options=FAST)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


def test_unknown_ignored_layer_is_named(digits, tmp_path):
    from core.models import model_for_data

    net = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[16])
    for method in ("structured-l2", "l1-unstructured"):
        with pytest.raises(InvalidParameterError, match="'ignore'.*features.1"):
            _run(net, digits, tmp_path, method=method, ignore=("nope",))


def test_torch_export_program_unstructured(digits, tmp_path):
    from core.artifacts import load_model, trusted_model_code
    from core.models import model_for_data

    net = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[16]).eval()
    program = torch.export.export(net, (torch.from_numpy(digits.X_test[:2]),),
                                  dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    with trusted_model_code():  # a .pt2 runs code when loaded: only with the opt-in
        result = _run(tmp_path / "net.pt2", digits, tmp_path, method="l1-unstructured",
                      sparsity=0.7, finetune_epochs=1)
    res = result.report["result"]
    assert res["nonzero_params"] < 0.4 * res["params"]
    saved = load_model(result.run_dir / "model.pt2", trust_model=True)
    assert saved.kind == "export" and saved.model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    with pytest.raises(UnsupportedModelError, match="torch.export"), trusted_model_code():
        _run(tmp_path / "net.pt2", digits, tmp_path, name="q", method="structured-l1")
