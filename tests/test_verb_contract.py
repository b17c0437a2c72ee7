"""One verb contract: ``verb(model_or_run, data, config | mapping | name, *, out_dir, ...,
**overrides) -> RunResult``, and self-describing configs (``method`` + ``schema_version``)."""

from __future__ import annotations

import importlib

import pytest

from core.errors import InvalidParameterError
from core.registry import SCHEMA_VERSION, list_methods, resolve_config

VERBS = [("core.quantization", "quantize", "ort-fp16"), ("core.pruning", "prune", None),
         ("core.distillation", "distill", None), ("core.tuning", "tune", None),
         ("core.federated", "scale", None), ("core.continual", "continual", None),
         ("core.auto", "auto", None), ("core.lowrank", "factorize", None),
         ("core.fusion", "fuse", None), ("core.runs", "train_baseline", None)]

CONFIGS = [("core.tuning", "TuneConfig", "tpe"), ("core.federated", "ScaleConfig", "fedavg"),
           ("core.continual", "ContinualConfig", "experience-replay"),
           ("core.auto", "AutoConfig", "auto"), ("core.distillation", "DistillConfig",
                                                  "soft-target"),
           ("core.lowrank", "LowRankConfig", "svd"), ("core.fusion", "FusionConfig", "fx-fuse"),
           ("core.pruning", "PruningConfig", "structured-l2")]


@pytest.mark.parametrize("module,name,config", VERBS, ids=[v[1] for v in VERBS])
def test_an_unknown_override_is_one_clear_error_before_any_work(tmp_path, module, name,
                                                                 config):
    verb = getattr(importlib.import_module(module), name)
    model = "cnn" if name == "train_baseline" else str(tmp_path / "no-such-run")
    with pytest.raises(InvalidParameterError, match="'no_such_option'"):
        verb(model, None, config, out_dir=tmp_path / "out", no_such_option=1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module,cls,method", CONFIGS, ids=[c[1] for c in CONFIGS])
def test_configs_describe_themselves_and_read_older_dicts(module, cls, method):
    config_cls = getattr(importlib.import_module(module), cls)
    values = config_cls().to_dict()
    assert (values["method"], values["schema_version"]) == (method, SCHEMA_VERSION)
    assert config_cls.from_dict(values) == config_cls()
    older = {k: v for k, v in values.items() if k not in ("method", "schema_version")}
    assert config_cls.from_dict(older) == config_cls()
    with pytest.raises(InvalidParameterError, match="schema_version"):
        config_cls.from_dict({**values, "schema_version": SCHEMA_VERSION + 1})


def test_a_name_mapping_or_object_with_overrides_resolve_to_the_same_config():
    from core.quantization import OrtStaticInt8Config
    from core.tuning import TuneConfig

    want = OrtStaticInt8Config(per_channel=True, calibration_size=64)
    assert resolve_config("ort-static-int8", {"per_channel": True, "calibration_size": 64},
                          area="quantization") == want
    assert resolve_config({"method": "ort-static-int8", "per_channel": True},
                          {"calibration_size": 64}, area="quantization") == want
    assert resolve_config(OrtStaticInt8Config(), {"per_channel": True, "calibration_size": 64},
                          area="quantization") == want
    # a method whose name lives in another field (tuning's samplers)
    assert resolve_config("nsga2", {"n_trials": 3}, area="tuning", cls=TuneConfig) == \
        TuneConfig(sampler="nsga2", n_trials=3)
    assert resolve_config(TuneConfig(), {"method": "random"}, area="tuning",
                          cls=TuneConfig).sampler == "random"


def test_resolve_config_refusals_name_the_parameter():
    from core.quantization import OrtFp16Config
    from core.training import TrainConfig

    with pytest.raises(InvalidParameterError, match="'method'.*ort-static-int8"):
        resolve_config(None, area="quantization")  # no default method: one must be named
    with pytest.raises(InvalidParameterError, match="'per_channel'"):
        resolve_config("ort-fp16", {"per_channel": True}, area="quantization")
    with pytest.raises(InvalidParameterError, match="'method'.*ort-fp16"):
        resolve_config(OrtFp16Config(), {"method": "ort-int4"}, area="quantization")
    with pytest.raises(InvalidParameterError, match="'config'"):
        resolve_config(TrainConfig(), area="pruning")
    with pytest.raises(InvalidParameterError, match="'config'"):
        resolve_config("fast", cls=TrainConfig)  # an area without method names


def test_distillation_methods_are_the_configs_declared_names():
    """The config validates against a constant, so import order cannot change what it
    accepts; the registered methods must be exactly those names."""
    from core.distillation._config import METHODS

    assert list_methods("distillation") == list(METHODS)
