"""A served model's per-request limits are read like every other STUDIO_* limit."""

from __future__ import annotations

import pytest

from core.errors import InvalidParameterError


def test_serving_limits_follow_the_environment_and_the_arguments_win(monkeypatch):
    from core.serving import endpoint_limits

    monkeypatch.setenv("STUDIO_SERVE_MAX_BATCH", "8")
    monkeypatch.setenv("STUDIO_SERVE_MAX_BODY_MB", "0.5")
    limits = endpoint_limits()
    assert (limits.max_batch, limits.max_body_bytes) == (8, 2**19)
    assert endpoint_limits(max_batch=3, max_body_mb=1).max_batch == 3
    monkeypatch.setenv("STUDIO_SERVE_MAX_BATCH", "many")
    with pytest.raises(InvalidParameterError, match="STUDIO_SERVE_MAX_BATCH"):
        endpoint_limits()
