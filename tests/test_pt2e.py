"""torch INT8 through torchao PT2E: quantized ops and accuracy, the split of a module reused for
several calls, the .pt2 round trip through the studio's loader, and one compiled run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

FAST = {"budget_s": 0.02, "memory": False}


@pytest.fixture(scope="module")
def static_run(baseline_dir, tmp_path_factory):
    from core.quantization import make_config, quantize

    config = make_config("torch-static-int8", {"calibration_size": 128, "compile": False})
    return quantize(baseline_dir, None, config, out_dir=tmp_path_factory.mktemp("pt2e") / "q",
                    measure_options=FAST)


def test_static_int8_has_quantized_ops_and_keeps_accuracy(static_run):
    from core.artifacts._inspect import load_pt2_safely

    report = static_run.report
    program = load_pt2_safely(static_run.run_dir / "model.pt2")
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    layers = report["quantization"]["layers_quantized"]
    assert layers == ["features.0", "features.4", "classifier"]
    assert sum("dequantize_per_channel" in t for t in targets) == len(layers)  # INT8 weights
    assert any("quantize_per_tensor" in t for t in targets)
    assert "quantize_per_tensor" in report["quantization"]["evidence"]
    int8 = [t for t in [*program.state_dict.values(), *program.constants.values()]
            if t.dtype == torch.int8]
    assert len(int8) == len(layers)
    assert abs(report["result"]["accuracy"] - report["baseline"]["accuracy"]) <= 0.03
    assert report["quantization"]["compile"]["compiled"] is False
    assert any("uncompiled" in w for w in report["warnings"])


def test_saved_pt2_loads_as_studio_made_and_predicts_the_same(static_run, digits, tmp_path,
                                                            monkeypatch):
    import core.artifacts._trust as trust
    from core.artifacts import load_model
    from core.artifacts._trust import UntrustedModelError
    from core.measure import evaluate

    path = static_run.run_dir / "model.pt2"
    loaded = load_model(path)  # no opt-in: the studio recorded these bytes when it wrote them
    assert loaded.kind == "export"
    accuracy = evaluate(loaded.model, digits, "test").accuracy
    assert accuracy == pytest.approx(static_run.report["result"]["accuracy"], abs=1e-9)
    # the same bytes unknown to the trust store are a user's .pt2: refused without trust
    monkeypatch.setenv(trust.STORE_ENV, str(tmp_path / "empty-store"))
    monkeypatch.setattr(trust, "_MADE", set())
    with pytest.raises(UntrustedModelError):
        load_model(path)
    assert load_model(path, trust_model=True).kind == "export"


class _SharedReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()  # one module, two calls
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.c2(self.act(self.c1(x)))).flatten(1))


class _TwoReLUs(_SharedReLU):
    def __init__(self) -> None:
        super().__init__()
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.c2(self.act(self.c1(x)))).flatten(1))


def _quantized(model: nn.Module, rows: torch.Tensor):
    from core.quantization._pt2e import pt2e_quantize

    layers = ["c1", "c2", "fc"]
    return pt2e_quantize(model, rows[:2], mode="static", chosen=layers, all_layers=layers,
                         calibrate=lambda m: m(rows))


def test_reused_relu_is_split_and_quantizes_like_two_modules():
    torch.manual_seed(0)
    shared = _SharedReLU().eval()
    two = _TwoReLUs().eval()
    two.load_state_dict(shared.state_dict())
    rows = torch.randn(64, 1, 8, 8)
    q_shared, info_shared = _quantized(shared, rows)
    q_two, info_two = _quantized(two, rows)
    assert info_shared["reused_module_calls_split"] == 1
    assert info_two["reused_module_calls_split"] == 0
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(q_shared.module()(x), q_two.module()(x))  # the split changes nothing
    fused = [str(n.target) for n in q_shared.graph.nodes if "dequantize_per_channel" in
             str(n.target)]
    assert len(fused) == 3  # both convolutions and the linear layer are INT8


def test_compiled_once_with_the_compile_time_apart(baseline_dir, tmp_path):
    """One compile (one batch size): latency of the compiled program, compile seconds apart."""
    from core.quantization import make_config, quantize

    config = make_config("torch-static-int8", {"calibration_size": 64, "compile": True})
    report = quantize(baseline_dir, None, config, out_dir=tmp_path / "c",
                      measure_options={**FAST, "batch_sizes": (16,)}).report
    entry = report["quantization"]["compile"]
    if entry.get("error"):  # no C compiler here: measured uncompiled, and said so
        assert report["result"]["compile_s"] is None
        assert any("torch.compile was not available" in w for w in report["warnings"])
        return
    assert entry["compiled"] and list(entry["seconds_by_batch"]) == ["16"]
    assert entry["uncompiled_calls"] == 0  # every timed call ran the warm compiled graph
    assert report["result"]["compile_s"] == pytest.approx(entry["seconds_by_batch"]["16"])
    assert report["result"]["compile_s"] > 0
    assert list(report["result"]["latency_ms"]) == ["16"]
    # the compiled kernels round differently from the reference graph, not by much
    assert abs(report["result"]["accuracy"] - report["baseline"]["accuracy"]) <= 0.03


@pytest.fixture(scope="module")
def mobilenet_digits():
    """A MobileNetV3-style net (depthwise, SE, hardswish) trained 1 epoch on digits 3x32x32
    (as benchmarks/engines.py does): ~60 % accurate, its decisions easily upset."""
    from tests.helpers import zoo

    data = zoo.digits_3x32()
    torch.manual_seed(0)
    return zoo.fit(zoo.mobilenet_v3_like(10), data, epochs=1), data


def _compiled_static_int8(model: nn.Module, data, out, **options):
    from core.quantization import make_config, quantize

    config = make_config("torch-static-int8", {"compile": True, **options})
    return quantize(model, data, config, out_dir=out,
                    measure_options={**FAST, "batch_sizes": (64,)})


def test_static_int8_compiled_keeps_mobilenet_accuracy(mobilenet_digits, tmp_path):
    """oneDNN's INT8 kernels on a CPU without VNNI add uint8 x int8 pairs in 16 bits: with
    8-bit activations they saturated and this compiled model lost 28 points on an AVX2 CPU (the
    reference graph 0.6). Activations are 7-bit by default (measured loss 0), on any CPU."""
    from core.artifacts._inspect import load_pt2_safely

    run = _compiled_static_int8(*mobilenet_digits, tmp_path / "q")
    report = run.report
    if report["quantization"]["compile"].get("error"):
        pytest.skip("no C compiler for torch.compile here")
    assert report["quantization"]["compile"]["uncompiled_calls"] == 0
    program = load_pt2_safely(run.run_dir / "model.pt2")
    acts = [n for n in program.graph.nodes
            if str(n.target).startswith("quantized_decomposed.quantize_per_tensor")]
    assert acts and {n.args[4] for n in acts} == {127}  # quant_max: 7-bit activations
    assert report["baseline"]["accuracy"] - report["result"]["accuracy"] <= 0.05


def test_the_recorded_validation_score_is_the_compiled_programs(mobilenet_digits, tmp_path):
    """What the Quantization tab's star and the tolerance read is the compiled program's own
    validation score: with full 8-bit activations on a CPU without VNNI only the compiled
    kernels saturate, so the uncompiled graph's score would hide the loss."""
    from core.measure import int8_dot_product

    if int8_dot_product() is not False:
        pytest.skip("8-bit activations saturate only on a CPU without an INT8 dot product")
    run = _compiled_static_int8(*mobilenet_digits, tmp_path / "q8", reduce_range=False)
    q = run.report["quantization"]
    if q["compile"].get("error"):
        pytest.skip("no C compiler for torch.compile here")
    assert q["graph_val_accuracy"] - q["quantized_val_accuracy"] > 0.05
    assert q["fp32_val_accuracy"] - q["quantized_val_accuracy"] > 0.05
    assert any("Compiled, the INT8 program scores" in w for w in run.report["warnings"])
