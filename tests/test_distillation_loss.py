"""Hinton's distillation loss (core.training.distillation_loss), the one the distill verb and the
pruning fine-tune use: checked against the formula written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.training import distillation_loss


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=gen)
    teacher = 3 * torch.randn(8, 5, generator=gen)
    labels = torch.randint(0, 5, (8,), generator=gen)
    return logits, teacher, labels


def _kl_by_hand(student: torch.Tensor, teacher: torch.Tensor, T: float) -> float:
    """mean over rows of sum_k p_k (log p_k - log q_k), p = softmax(teacher/T), q = student's."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        zt = [math.exp(v / T) for v in t_row]
        zs = [math.exp(v / T) for v in s_row]
        p = [v / sum(zt) for v in zt]
        q = [v / sum(zs) for v in zs]
        total += sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q))
    return total / len(student)


def test_alpha_zero_is_plain_cross_entropy(batch):
    logits, teacher, labels = batch
    loss = distillation_loss(logits, teacher, labels, alpha=0.0, temperature=4.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)


def test_alpha_one_ignores_the_labels(batch):
    logits, teacher, labels = batch
    a = distillation_loss(logits, teacher, labels, alpha=1.0, temperature=4.0)
    b = distillation_loss(logits, teacher, (labels + 1) % 5, alpha=1.0, temperature=4.0)
    c = distillation_loss(logits, teacher, torch.full_like(labels, -1), alpha=1.0,
                          temperature=4.0)
    assert float(a) == float(b) == pytest.approx(float(c), rel=1e-6)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_soft_term_is_t_squared_times_the_kl(batch, T):
    logits, teacher, labels = batch
    kl = _kl_by_hand(logits, teacher, T)
    soft = distillation_loss(logits, teacher, labels, alpha=1.0, temperature=T)
    assert float(soft) == pytest.approx(T * T * kl, rel=1e-5)
    mixed = distillation_loss(logits, teacher, labels, alpha=0.7, temperature=T)
    ce = float(F.cross_entropy(logits, labels))
    assert float(mixed) == pytest.approx(0.3 * ce + 0.7 * T * T * kl, rel=1e-5)


def test_teacher_probabilities_give_the_same_loss(batch):
    logits, teacher, labels = batch
    probs = F.softmax(teacher / 4.0, dim=1)
    by_logits = distillation_loss(logits, teacher, labels, alpha=0.5, temperature=4.0)
    by_probs = distillation_loss(logits, None, labels, alpha=0.5, temperature=4.0,
                                 teacher_probs=probs)
    assert float(by_probs) == pytest.approx(float(by_logits), rel=1e-5)


def test_unlabelled_rows_count_only_in_the_soft_term(batch):
    logits, teacher, labels = batch
    partial = labels.clone()
    partial[4:] = -1
    loss = distillation_loss(logits, teacher, partial, alpha=0.5, temperature=2.0)
    ce_sum = float(F.cross_entropy(logits[:4], labels[:4], reduction="sum"))
    expected = 0.5 * ce_sum / 8 + 0.5 * 4.0 * _kl_by_hand(logits, teacher, 2.0)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # no teacher: the label term alone, and the graph stays connected
    only = distillation_loss(logits.requires_grad_(), None, partial, alpha=0.5,
                             temperature=2.0)
    only.backward()
    assert float(only) == pytest.approx(0.5 * ce_sum / 8, rel=1e-5)
    assert logits.grad is not None and float(logits.grad[4:].abs().sum()) == 0.0
