"""TrainConfig's training options: each changes training observably, bad values one error."""

from __future__ import annotations

import pytest
import torch

from core.data import load_dataset
from core.errors import InvalidParameterError
from core.models import build_model
from core.training import TrainConfig, _options, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _mlp(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mlp", input_shape=[1, 8, 8], num_classes=10, hidden_dims=[16])


def _fit(data, rows: int = 128, **options):
    model = _mlp()
    config = TrainConfig(**{"epochs": 1, "lr": 0.05, "batch_size": 32, **options})
    result = train(model, data, config, train_split=(data.X_train[:rows], data.y_train[:rows]))
    return model, result


def _same_weights(a, b, atol=1e-6) -> bool:
    return all(torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters()))


def test_label_smoothing_changes_the_loss(digits):
    _, plain = _fit(digits)
    _, smooth = _fit(digits, label_smoothing=0.3)
    assert smooth.history[0]["train_loss"] > plain.history[0]["train_loss"] + 0.01


def test_grad_accumulation_equals_a_larger_batch_for_one_sgd_step(digits):
    big, _ = _fit(digits, rows=64, batch_size=64, optimizer="sgd")
    accum, _ = _fit(digits, rows=64, batch_size=16, grad_accum_steps=4, optimizer="sgd")
    small, _ = _fit(digits, rows=64, batch_size=16, optimizer="sgd")
    assert _same_weights(big, accum)
    assert not _same_weights(big, small)  # four steps of 16 rows differ from one of 64


def test_schedules_change_the_learning_rate(digits):
    lrs = {}
    for schedule in ("constant", "step", "onecycle", "cosine"):
        _, result = _fit(digits, epochs=2, lr=0.1, lr_schedule=schedule, lr_step_epochs=1,
                         lr_gamma=0.5)
        lrs[schedule] = [row["lr"] for row in result.history]
    assert lrs["constant"] == pytest.approx([0.1, 0.1])
    assert lrs["step"] == pytest.approx([0.05, 0.025])
    assert lrs["onecycle"][0] > 0.05 and lrs["onecycle"][1] < lrs["onecycle"][0] / 5  # annealed
    assert lrs["cosine"][0] == pytest.approx(0.05, rel=0.2) and lrs["cosine"][1] < 1e-6


def test_bf16_autocast_where_native_else_fp32_with_a_warning(digits, monkeypatch):
    fp32_model, fp32 = _fit(digits)
    monkeypatch.setattr(_options, "bf16_native", lambda: False)
    model, emulated = _fit(digits, precision="bf16")
    assert _same_weights(model, fp32_model, atol=0) and "fp32" in emulated.warnings[0]
    monkeypatch.setattr(_options, "bf16_native", lambda: True)
    _, native = _fit(digits, precision="bf16")
    assert not native.warnings
    assert native.history[0]["train_loss"] != fp32.history[0]["train_loss"]


def test_gradient_checkpointing_recomputes_blocks_same_result(digits):
    calls = []
    plain, _ = _fit(digits)
    model = _mlp()
    model.features[1].register_forward_hook(lambda *a: calls.append(1))
    train(model, digits, TrainConfig(epochs=1, lr=0.05, batch_size=32, grad_checkpointing=True),
          train_split=(digits.X_train[:128], digits.y_train[:128]))
    model_off = _mlp()
    calls_off = []
    model_off.features[1].register_forward_hook(lambda *a: calls_off.append(1))
    train(model_off, digits, TrainConfig(epochs=1, lr=0.05, batch_size=32),
          train_split=(digits.X_train[:128], digits.y_train[:128]))
    assert len(calls) - len(calls_off) == 4  # each of the 4 batches' block ran again
    assert _same_weights(model, plain, atol=1e-5)
    assert "forward" not in model.features.__dict__  # restored after training
    cnn = build_model("cnn", input_shape=[1, 8, 8], num_classes=10, channels=[4])
    with pytest.raises(InvalidParameterError, match="'grad_checkpointing'.*BatchNorm"):
        train(cnn, digits, TrainConfig(epochs=1, grad_checkpointing=True))


def test_mixup_and_cutmix_change_the_batches(digits):
    _, plain = _fit(digits)
    _, mixup = _fit(digits, mixup_alpha=0.4)
    _, cutmix = _fit(digits, cutmix_alpha=1.0)
    losses = {r.history[0]["train_loss"] for r in (plain, mixup, cutmix)}
    assert len(losses) == 3
    wine = load_dataset("wine")
    model = build_model("mlp", input_shape=[13], num_classes=3, hidden_dims=[8])
    with pytest.raises(InvalidParameterError, match="'cutmix_alpha'"):
        train(model, wine, TrainConfig(epochs=1, cutmix_alpha=1.0))


def test_the_result_records_time_per_epoch_and_peak_memory(digits):
    _, result = _fit(digits, epochs=2)
    out = result.to_dict()
    assert out["seconds_per_epoch"] > 0 and out["peak_memory_mb"] is not None
    assert len(out["epoch_seconds"]) == 2 and all(t > 0 for t in out["epoch_seconds"])


@pytest.mark.parametrize("kwargs, name", [
    ({"precision": "fp16"}, "precision"),
    ({"grad_accum_steps": 0}, "grad_accum_steps"),
    ({"grad_checkpointing": "yes"}, "grad_checkpointing"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"mixup_alpha": -1.0}, "mixup_alpha"),
    ({"cutmix_alpha": float("nan")}, "cutmix_alpha"),
    ({"lr_schedule": "poly"}, "lr_schedule"),
    ({"lr_gamma": 0.0}, "lr_gamma"),
    ({"lr_step_epochs": 0}, "lr_step_epochs"),
    ({"lr_schedule": "onecycle", "warmup_epochs": 1}, "warmup_epochs"),
])
def test_bad_values_give_one_clear_error(kwargs, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        TrainConfig(**kwargs)


def test_a_method_with_its_own_loss_refuses_label_smoothing(digits):
    with pytest.raises(InvalidParameterError, match="'label_smoothing'.*own loss"):
        train(_mlp(), digits, TrainConfig(epochs=1, label_smoothing=0.1),
              loss_fn=lambda m, x, y: m(x).sum())
