"""Serving a chosen variant: an ONNX endpoint with metrics, A/B tests, on-device measurement."""

from core.serving._ab import ABTest, two_proportion, welch_latency
from core.serving._container import container_files
from core.serving._endpoint import InputError, Limits, ModelRunner, parse_body
from core.serving._serve import (
    SERVE_LIMITS,
    EndpointProcess,
    EndpointServer,
    ServedVariant,
    build_endpoint,
    endpoint_limits,
    resolve_variant,
    serve_model,
)

__all__ = [
    "ABTest",
    "EndpointProcess",
    "EndpointServer",
    "InputError",
    "Limits",
    "ModelRunner",
    "SERVE_LIMITS",
    "ServedVariant",
    "build_endpoint",
    "container_files",
    "endpoint_limits",
    "parse_body",
    "resolve_variant",
    "serve_model",
    "two_proportion",
    "welch_latency",
]
