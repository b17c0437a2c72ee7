"""Optimization Studio: the Gradio UI over the ``core`` engine."""

import os

# Before gradio is imported anywhere: no analytics, no hub calls (GRADIO_NOTES.md).
for _key, _value in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_key, _value)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
