"""Low-rank factorization: the requested rank, exact at full rank, measured and fine-tuned."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import FAST_MEASURE


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.fc1, self.fc2, self.fc_final = nn.Linear(12 * 16, 64), nn.Linear(64, 48), \
            nn.Linear(48, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc_final(torch.relu(self.fc2(torch.relu(self.fc1(h)))))


def _product(seq: nn.Sequential) -> torch.Tensor:
    first, second = seq
    return second.weight.flatten(1) @ first.weight.flatten(1)


def test_seed_example_layers_get_the_requested_rank():
    from core import LowRankFactorizer

    torch.manual_seed(0)
    model = Net().eval()
    factorizer = LowRankFactorizer()

    factorized_model = factorizer.factorize(
        model=model,
        rank_ratio=0.5,  # 50% of original rank
        layers=["fc1", "fc2"]
    )
    for name, full in (("fc1", 64), ("fc2", 48)):
        seq = factorized_model.get_submodule(name)
        assert isinstance(seq, nn.Sequential)
        assert torch.linalg.matrix_rank(_product(seq)) == full // 2
    assert isinstance(factorized_model.fc_final, nn.Linear)  # not chosen: untouched
    ranks = {e["layer"]: e["rank"] for e in factorizer.last_info["layers"]}
    assert ranks == {"fc1": 32, "fc2": 24}
    x = torch.randn(2, 3, 4, 4)
    assert factorized_model(x).shape == (2, 4)


def test_full_rank_is_exact_and_conv_split():
    from core.lowrank import factorize_model

    torch.manual_seed(1)
    model = Net().eval()
    same, info = factorize_model(model, 1.0)
    x = torch.randn(5, 3, 4, 4)
    assert torch.allclose(same(x), model(x), atol=1e-4)
    half, info = factorize_model(model, 0.25, ["conv"])
    first, second = half.conv
    assert first.kernel_size == (3, 3) and second.kernel_size == (1, 1)
    assert first.out_channels == 3  # ceil(0.25 * min(12, 27))
    w = model.conv.weight.detach().flatten(1)
    approx = _product(half.conv).detach()
    # Eckart–Young: the error is the energy of the dropped singular values
    s = torch.linalg.svdvals(w)
    assert float(torch.linalg.matrix_norm(w - approx).detach()) ** 2 == pytest.approx(
        float((s[3:] ** 2).sum()), rel=1e-3)


def test_factorize_verb_measured_with_finetune(baseline_dir, tmp_path):
    from core import factorize

    result = factorize(baseline_dir, config={"rank_ratio": 0.5, "finetune_epochs": 1},
                       out_dir=tmp_path / "lr", measure_options=FAST_MEASURE)
    rep = result.report
    assert rep["operation"] == "factorize" and rep["parent"] == baseline_dir.name
    lr = rep["lowrank"]
    assert lr["finetune"]["history"] and all(e["rank"] == -(-e["full_rank"] // 2)
                                             for e in lr["layers"])
    assert rep["result"]["params"] == rep["baseline"]["params"] - lr["params_before"] + \
        lr["params_after"]
    assert "speedup_b64" in rep["ratios"] and (result.run_dir / "model.onnx").is_file()


def test_bad_layer_and_ratio():
    from core.errors import InvalidParameterError
    from core.lowrank import LowRankConfig, factorize_model

    with pytest.raises(InvalidParameterError, match="'layers'.*fc9"):
        factorize_model(Net(), 0.5, ["fc9"])
    with pytest.raises(InvalidParameterError, match="'rank_ratio'"):
        LowRankConfig(rank_ratio=1.5)
