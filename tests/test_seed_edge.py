"""The seeds' tuner, auto-optimizer, benchmark helpers and edge classes, run as written
(import path adapted), with their outcomes checked."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.seed import HealthMonitorNet, quick_measurement


@pytest.fixture()
def seed_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick_measurement(monkeypatch)
    torch.manual_seed(0)
    return tmp_path


@pytest.fixture(scope="module")
def health():
    from core.data import load_dataset

    return load_dataset("health")


def _loader(X, y):
    return DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=64)


def test_tuner_passes_only_the_named_params(health):
    from core import HyperparameterTuner
    from core.training import TrainConfig, train

    seen = []

    def train_maml(model, inner_lr):
        seen.append(inner_lr)
        res = train(model, health, TrainConfig(epochs=1, lr=inner_lr))
        return {"accuracy": res.to_dict().get("val_accuracy") or 0.0}

    tuner = HyperparameterTuner(
        model_fn=lambda hidden_dims: HealthMonitorNet(9, hidden_dims, 4),
        train_fn=lambda model, inner_lr: train_maml(model, inner_lr),
        param_space={
            'hidden_dims': [[16, 8], [32, 16], [64, 32]],
            'inner_lr': [0.001, 0.01, 0.1],
            'inner_steps': [1, 3, 5]
        },
        metric='accuracy',
        maximize=True
    )

    # Random search (faster)
    result = tuner.random_search(n_trials=4)
    assert len(result.history) == 4 and set(seen) <= {0.001, 0.01, 0.1}
    assert result.best_score == max(h["score"] for h in result.history)


def test_default_param_space_has_the_seed_keys():
    from core.hyperparameter_tuning import DEFAULT_PARAM_SPACE

    # Includes: inner_lr, outer_lr, inner_steps, num_rounds, batch_size, hidden_dims, dropout
    assert set(DEFAULT_PARAM_SPACE) == {"inner_lr", "outer_lr", "inner_steps", "num_rounds",
                                        "batch_size", "hidden_dims", "dropout"}


def test_auto_optimizer_device_and_seed_results(seed_env, health):
    from core import AutoOptimizer
    from core.errors import InvalidParameterError

    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            AutoOptimizer(
                target_metric='balanced',  # 'speed', 'size', 'accuracy', 'balanced'
                device='cuda'
            )
    from core.training import TrainConfig, train

    model = HealthMonitorNet(9, [64, 32], 4)  # a seed user brings a trained model
    train(model, health, TrainConfig(epochs=10, lr=0.01))
    optimizer = AutoOptimizer(target_metric='balanced', device='cpu',
                              candidates=("ort-dynamic-int8", "ort-fp32"))
    results = optimizer.optimize_model(
        model=model,
        train_loader=_loader(health.X_train, health.y_train),
        test_loader=_loader(health.X_test, health.y_test)
    )
    baseline = results['baseline']['model']
    quantized = results['quantized']['model']
    combined = results['combined']['model']  # Best overall
    assert isinstance(baseline, torch.nn.Module)
    assert type(quantized).__name__ == "InferenceSession"
    assert results['combined']['name'] == results.report["auto"]["winner"]
    assert combined is not None
    with pytest.raises(KeyError, match="pruned"):
        results['pruned']


def test_benchmark_helpers(seed_env, health):
    from core import benchmark_models, create_efficiency_report, plot_optimization_comparison

    big, small = HealthMonitorNet(9, [256, 128], 4), HealthMonitorNet(9, [16], 4)
    results = benchmark_models({"big": big, "small": small}, health)
    assert results["big"]["params"] == sum(p.numel() for p in big.parameters())
    assert results["small"]["size_mb"] < results["big"]["size_mb"]
    fig = plot_optimization_comparison(results, save_path="comparison.html")
    assert len(fig.data) == 4 and (seed_env / "comparison.html").is_file()
    text = create_efficiency_report(results, save_path="report.md")
    assert "| small |" in text and (seed_env / "report.md").read_text() == text


def test_quantizer_kl_is_entropy(seed_env, health):
    from core import Quantizer

    original_model = HealthMonitorNet(9, [64, 32], 4)
    quantizer = Quantizer(method="int8")

    # Calibrate with representative data
    quantized_model = quantizer.quantize(
        model=original_model,
        calibration_data=health,
        algorithm="kl"  # or "kl", "percentile"
    )
    assert quantizer.last.report["config"]["calibration"] == "entropy"
    assert type(quantized_model).__name__ == "InferenceSession"


def test_pruner_and_distiller(seed_env, health):
    from core import KnowledgeDistiller, Pruner

    model = HealthMonitorNet(9, [64, 32], 4)
    pruner = Pruner(method="structured")
    pruned_model = pruner.prune(
        model=model,
        pruning_ratio=0.5,  # Remove 50% of channels
        criterion="l1_norm"  # or "l2_norm", "importance"
    )
    assert pruner.last.report["method"] == "structured-l1"
    count = sum(p.numel() for p in pruned_model.parameters())
    assert count < sum(p.numel() for p in model.parameters())
    pruned_model = pruner.fine_tune(pruned_model, train_data=health, epochs=1)
    assert pruner.last.report["config"]["finetune_epochs"] == 1

    small_model = HealthMonitorNet(9, [8], 4)
    before = [p.detach().clone() for p in small_model.parameters()]
    distiller = KnowledgeDistiller(teacher_model=model, student_model=small_model,
                                   temperature=3.0, alpha=0.7)
    distilled_model = distiller.train(train_data=health, epochs=2)
    assert distilled_model is small_model
    assert any(not torch.equal(a, b) for a, b in zip(before, small_model.parameters()))
    assert distiller.last.report["config"]["temperature"] == 3.0


class _ConvNet(torch.nn.Module):
    """A model with the seed's layer names (conv1 … fc_final) for the health data (9 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, 8, 3, padding=1)
        self.hidden = torch.nn.Linear(8 * 9, 32)
        self.fc_final = torch.nn.Linear(32, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x.reshape(-1, 1, 9)))
        return self.fc_final(torch.relu(self.hidden(x.flatten(1))))


def test_mixed_precision_keeps_the_named_layers_float(seed_env, health):
    from core import MixedPrecisionOptimizer

    model = _ConvNet()
    optimizer = MixedPrecisionOptimizer()

    # Automatically assign precisions
    mixed_model = optimizer.optimize(
        model=model,
        sensitive_layers=["conv1", "fc_final"],  # Keep FP32
        accuracy_threshold=0.99
    )
    kept = optimizer.last.report["quantization"]["kept_float"]
    assert any("conv1" in k for k in kept) and any("fc_final" in k for k in kept)
    assert not any("hidden" in k for k in kept)  # the unnamed layer is INT8 (within tolerance)
    assert mixed_model is not None


def test_qat_trainer_and_nas_optimizer(seed_env, health):
    from core import NASOptimizer, QATTrainer

    model = HealthMonitorNet(9, [64, 32], 4)
    trainer = QATTrainer(
        model=model,
        target_precision="int8"
    )
    qat_model = trainer.train(
        train_data=health,
        epochs=1,
        learning_rate=0.0001
    )
    int8_model = trainer.convert_to_int8(qat_model)
    assert trainer.last.report["method"] == "torch-qat-int8"
    assert int8_model(torch.zeros(2, 9)).shape == (2, 4)

    nas = NASOptimizer(
        search_space="mobilenet_v3",
        constraints={
            "latency_ms": 20,
            "model_size_mb": 5,
            "min_accuracy": 0.5
        },
        epochs=1,
    )
    best_arch = nas.search(train_data="digits", search_iterations=2)
    optimized_model = nas.build_model(best_arch)
    nas.train(optimized_model, "digits", epochs=1)
    assert nas.last.report["operation"] == "tune" and best_arch
    assert optimized_model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
