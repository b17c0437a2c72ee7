"""The seed documents' ModelCompressor / prune_model / quantize_model examples, run as written
(only ``from src.optimization import …`` / ``from optimizers.… import …`` became ``from core
import …``), with their outcomes checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.seed import HealthMonitorNet


@pytest.fixture()
def seed_env(tmp_path, monkeypatch):
    """Run in a fresh folder (the seeds write relative paths), with quick timing."""
    from tests.helpers.seed import quick_measurement

    monkeypatch.chdir(tmp_path)
    quick_measurement(monkeypatch)
    torch.manual_seed(0)
    return tmp_path


@pytest.fixture()
def train_loader():
    from core.data import load_dataset

    ds = load_dataset("health")
    return DataLoader(TensorDataset(torch.from_numpy(ds.X_train), torch.from_numpy(ds.y_train)),
                      batch_size=64, shuffle=True)


def _sparsity_from_saved(run_dir) -> float:
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(t) for t in onnx.load(str(run_dir / "model.onnx"))
               .graph.initializer if len(t.dims) == 2]
    return float(sum((w == 0).sum() for w in weights) / sum(w.size for w in weights))


def test_model_compressor_seed_example(seed_env, train_loader):
    from core import ModelCompressor

    model = HealthMonitorNet(9, [32, 16], 4)
    compressor = ModelCompressor(model)

    # Pruning (reduce parameters)
    pruned = compressor.prune(amount=0.3, method='l1_unstructured')

    # Quantization (reduce precision)
    quantized = compressor.quantize(mode='dynamic', dtype=torch.qint8)

    # Benchmark
    benchmark = compressor.benchmark(torch.randn(1, 9), num_runs=100)

    # Save compressed model
    with pytest.warns(UserWarning, match="saved as 'compressed_model.onnx'"):
        compressor.save('compressed_model.pt')

    prune_run, quant_run = (r.run_dir for r in compressor.history)
    assert pruned is compressor and quantized is compressor
    assert "health" in compressor.notes[0]
    assert _sparsity_from_saved(prune_run) == pytest.approx(0.3, abs=0.01)
    assert compressor.history[1].report["method"] == "ort-dynamic-int8"
    assert benchmark["num_runs"] == 100 and benchmark["latency_ms"]["p50"] > 0
    saved = seed_env / "compressed_model.onnx"
    assert saved.read_bytes() == (quant_run / "model.onnx").read_bytes()
    # a 9-32-16-4 MLP is too small for INT8 to shrink the file (scales, zero points and
    # quantize nodes outweigh 3 bytes saved per weight): the figures say so as measured
    assert benchmark["size_bytes"] == saved.stat().st_size
    import onnx

    ops = {n.op_type for n in onnx.load(str(saved)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops

    # Knowledge distillation
    student = HealthMonitorNet(9, [16, 8], 4)  # Smaller model
    before = [p.detach().clone() for p in student.parameters()]
    trained_student = compressor.distill(
        student_model=student,
        train_loader=train_loader,
        temperature=4.0,
        alpha=0.7,
        epochs=10
    )
    assert trained_student is student
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    kd = compressor.history[-1].report
    assert kd["operation"] == "distill" and kd["config"]["temperature"] == 4.0
    assert kd["result"]["params"] == sum(p.numel() for p in student.parameters())


def test_convenience_functions_seed_example(seed_env):
    from core import prune_model, quantize_model

    model = HealthMonitorNet(9, [32, 16], 4)

    # Quick pruning
    pruned = prune_model(model, amount=0.3)

    # Quick quantization
    quantized = quantize_model(model, mode='dynamic')

    assert pruned.report["config"]["sparsity"] == 0.3
    assert pruned.report["result"]["params"] < pruned.report["baseline"]["params"]
    assert quantized.report["method"] == "torch-dynamic-int8"
    q = quantized['quantized_model']
    assert q(torch.randn(2, 9)).shape == (2, 4)


def test_phase4_quantize_model_qat(seed_env, train_loader):
    from core import quantize_model

    my_model = HealthMonitorNet(9, [512, 256], 4)  # the seed leaves my_model open
    result = quantize_model(
        model=my_model,
        train_loader=train_loader,
        dtype='qint8',  # or 'float16'
        qat_epochs=3,
        device='cpu'
    )

    quantized_model = result['quantized_model']
    metrics = result['metrics']  # compression_ratio, sizes

    assert result.report["method"] == "torch-qat-int8"
    assert result.report["config"]["epochs"] == 3
    assert metrics["compression_ratio"] == pytest.approx(
        metrics["original_size_mb"] / metrics["compressed_size_mb"])
    assert metrics["compression_ratio"] > 2.0  # INT8 weights: ~4x on 135k parameters
    assert metrics["compressed_size_mb"] * 2**20 == (result.run_dir / "model.pt2").stat().st_size
    x = torch.from_numpy(np.zeros((3, 9), np.float32))
    assert quantized_model(x).shape == (3, 4)


def test_phase4_prune_model_channel_gradual(seed_env):
    from core import prune_model

    my_model = HealthMonitorNet(9, [32, 16], 4)
    calls = []

    def fine_tune_function(model):
        calls.append(model)
        return model

    result = prune_model(
        model=my_model,
        target_sparsity=0.5,  # Remove 50% parameters
        method='channel',  # structured pruning
        gradual=True,
        train_fn=fine_tune_function
    )

    pruned_model = result['pruned_model']
    assert calls == [pruned_model]
    cfg = result.report["config"]
    assert cfg["method"] == "structured-l2" and cfg["schedule"] == "gradual"
    widths = [m.out_features for m in pruned_model.modules() if isinstance(m, nn.Linear)] \
        if any(isinstance(m, nn.Linear) for m in pruned_model.modules()) else None
    assert result.report["result"]["params"] < result.report["baseline"]["params"]
    assert widths is None or widths[-1] == 4


def test_cuda_and_bad_seed_names_are_clear():
    from core import quantize_model
    from core.errors import InvalidParameterError

    model = HealthMonitorNet(9, [8], 4)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            quantize_model(model=model, dtype='qint8', device='cuda')
    with pytest.raises(InvalidParameterError, match="'dtype'"):
        quantize_model(model=model, dtype='int3')
