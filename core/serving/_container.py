"""A container recipe for a served variant: Dockerfile, requirements.txt and serve.py."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

_ENDPOINT = Path(__file__).with_name("_endpoint.py")
# The serving stack only (no torch, no studio); versions as tested here, bounded above.
_PACKAGES = ("numpy", "onnxruntime", "fastapi", "uvicorn", "prometheus-client")


def _requirement(dist: str) -> str:
    try:
        major = int(metadata.version(dist).split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return dist
    return f"{dist}>={metadata.version(dist)},<{major + 1}"


def container_files(*, model_files: list[str], output_name: str | None = None,
                    port: int = 8000) -> dict[str, str]:
    """``{name: text}`` to place beside the model files of a bundle."""
    copies = " ".join(sorted(model_files))
    cmd = ["python", "serve.py", "--model", "model.onnx", "--host", "0.0.0.0",
           "--port", str(port)]
    if output_name:
        cmd += ["--output-name", output_name]
    cmd_json = ", ".join(f'"{c}"' for c in cmd)
    dockerfile = f"""# Serves model.onnx with FastAPI + ONNX Runtime (by Optimization Studio).
# Build: docker build -t my-model .   Run: docker run -p {port}:{port} my-model
# Then: curl -H 'Content-Type: application/json' -d '{{"inputs": [[...]]}}' \\
#            http://127.0.0.1:{port}/predict   (also /healthz, /readyz, /metrics)
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY serve.py {copies} ./
RUN useradd --create-home --uid 10001 app
USER app
EXPOSE {port}
HEALTHCHECK --interval=30s --timeout=3s \\
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/readyz')"
CMD [{cmd_json}]
"""
    requirements = "\n".join(_requirement(d) for d in _PACKAGES) + "\n"
    return {"Dockerfile": dockerfile, "requirements.txt": requirements,
            "serve.py": _ENDPOINT.read_text()}
