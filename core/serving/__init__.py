"""Serving a chosen variant: an ONNX endpoint with metrics, A/B tests, on-device measurement."""

from core.serving._ab import ABTest, two_proportion, welch_latency
from core.serving._container import container_files
from core.serving._devices import (
    DeviceNotFoundError,
    DeviceStore,
    add_device_routes,
    session_variants,
)
from core.serving._endpoint import InputError, Limits, ModelRunner, parse_body
from core.serving._protocol import protocol
from core.serving._ranking import device_ranking, load_device, ranking_markdown
from core.serving._serve import (
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
    "DeviceNotFoundError",
    "DeviceStore",
    "EndpointProcess",
    "EndpointServer",
    "InputError",
    "Limits",
    "ModelRunner",
    "ServedVariant",
    "add_device_routes",
    "build_endpoint",
    "container_files",
    "device_ranking",
    "endpoint_limits",
    "load_device",
    "parse_body",
    "protocol",
    "ranking_markdown",
    "resolve_variant",
    "serve_model",
    "session_variants",
    "two_proportion",
    "welch_latency",
]
