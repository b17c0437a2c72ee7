"""The measurement protocol and environment manifest, for torch modules and ORT sessions."""

import sys
import types

from core.measure._accuracy import Metrics, evaluate, metrics_from_logits
from core.measure._counting import onnx_macs, onnx_param_counts, torch_macs, torch_param_counts
from core.measure._environment import (
    cpu_isa,
    environment_manifest,
    int8_dot_product,
    int8_dot_text,
    isa_known,
    isa_text,
)
from core.measure._latency import batch_of, interleaved_latency
from core.measure._lock import measurement_lock, torch_threads
from core.measure._measure import Measurement, measure, measure_many, serialized_size
from core.measure._peak import peaks
from core.measure._predictor import (
    Predictor,
    as_predictor,
    ort_session,
    predict_logits,
    predict_many,
)
from core.measure._target import Target, active_target, using_target
from core.measure._verdict import (
    FASTER,
    NO_FASTER,
    SLOWER,
    noise_band,
    speed_label,
    speed_phrase,
    speed_verdict,
)

__all__ = [
    "FASTER",
    "NO_FASTER",
    "SLOWER",
    "Measurement",
    "Metrics",
    "Predictor",
    "Target",
    "active_target",
    "as_predictor",
    "batch_of",
    "cpu_isa",
    "environment_manifest",
    "evaluate",
    "int8_dot_product",
    "int8_dot_text",
    "isa_known",
    "isa_text",
    "interleaved_latency",
    "measure",
    "measure_many",
    "measurement_lock",
    "metrics_from_logits",
    "noise_band",
    "onnx_macs",
    "onnx_param_counts",
    "ort_session",
    "peaks",
    "predict_logits",
    "predict_many",
    "serialized_size",
    "speed_label",
    "speed_phrase",
    "speed_verdict",
    "torch_macs",
    "torch_param_counts",
    "torch_threads",
    "using_target",
]


class _MeasurePackage(types.ModuleType):
    """``from core import measure`` gives this package; calling it measures (DESIGN.md)."""

    def __call__(self, model, data, **kwargs):
        return measure(model, data, **kwargs)


sys.modules[__name__].__class__ = _MeasurePackage
