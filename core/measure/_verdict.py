"""One speed verdict for every report, tab and CLI: faster, no faster within noise, or slower.

The noise band is measured, not chosen: ``benchmarks/measure.py`` times one model against an
identical copy several times and writes the largest spread it saw (A/A ratio within one run,
p50 from run to run) to ``noise_band.json`` beside this file, with the machine it ran on.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

FASTER = "faster"
NO_FASTER = "no faster within noise"
SLOWER = "slower"
VERDICTS = (FASTER, NO_FASTER, SLOWER)
BAND_FILE = Path(__file__).with_name("noise_band.json")


@functools.lru_cache(maxsize=1)
def noise_record() -> dict[str, Any]:
    """The recorded measurement of the noise band: ``{"band": 0.016, "machine": {...}, ...}``."""
    return json.loads(BAND_FILE.read_text(encoding="utf-8"))


def noise_band() -> float:
    """Relative band around 1.0 within which two timings are a tie (e.g. 0.016 = ±1.6 %)."""
    return float(noise_record()["band"])


def speed_verdict(ratio: float | None, noise: float | None = None) -> str | None:
    """``faster`` / ``no faster within noise`` / ``slower`` for a speed-up ``ratio``.

    ``ratio`` is baseline time / result time (above 1: the result is faster); ``noise`` is
    the relative band (default: the measured :func:`noise_band`). ``None`` when no ratio.
    """
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return None
    band = noise_band() if noise is None else float(noise)
    if ratio >= 1.0 + band:
        return FASTER
    if ratio <= 1.0 / (1.0 + band):
        return SLOWER
    return NO_FASTER


def speed_phrase(ratio: float, against: str, noise: float | None = None) -> str:
    """``"2.10× faster than X"`` / ``"no faster than X (1.01×, within noise)"`` / ``"1.50×
    slower than X"`` — the verdict in words, for warnings and tables."""
    verdict = speed_verdict(ratio, noise)
    if verdict == FASTER:
        return f"{ratio:.2f}× faster than {against}"
    if verdict == SLOWER:
        return f"{1 / ratio:.2f}× slower than {against}"
    band = noise_band() if noise is None else float(noise)
    return (f"no faster than {against} ({ratio:.2f}× its speed, within the measured noise "
            f"of ±{100 * band:.1f} %)")


def speed_label(ratio: float | None, noise: float | None = None) -> str:
    """``"2.10× (faster)"`` / ``"1.01× (no faster within noise)"`` — for tables and summaries."""
    verdict = speed_verdict(ratio, noise)
    return "not measured" if verdict is None else f"{ratio:.2f}× ({verdict})"
