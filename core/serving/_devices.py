"""Registered devices and their figures, per session, and the REST routes agents use.

A session ("space") is a REST token's owner, or a studio workspace that handed a token out
("Connect a device" in the Deploy tab links the token's owner to the workspace). Its variants
are its run folders with a ``model.onnx``; an agent downloads only those files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import secrets
import threading
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidParameterError, StudioError

_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_MANIFEST_KEYS = {"name": str, "platform": str, "machine": str, "cpu": str, "isa": list,
                  "cores": int, "threads": int, "onnxruntime": str, "numpy": str, "python": str}
MAX_DEVICES = 50
VariantsOf = Callable[[str], dict[str, Path]]  # space -> {run id: run folder}


class DeviceNotFoundError(StudioError):
    """A device or variant id this session does not hold."""


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifest: dict[str, Any] = Field(..., description="platform, cpu, isa, onnxruntime, threads")


class Figures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(..., max_length=80)
    latency_ms: dict[str, dict[str, float]] = Field(
        ..., description='{"1": {"p50": ms, "p95": ms, "runs": n}, "64": {...}}')
    threads: int = Field(1, ge=1, le=1024)
    protocol: dict[str, Any] = Field(default_factory=dict)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _space_key(space: str) -> str:
    return hashlib.sha256(space.encode()).hexdigest()[:20]


def clean_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The known manifest fields, type-checked and length-bounded (one clear error)."""
    out: dict[str, Any] = {}
    for key, kind in _MANIFEST_KEYS.items():
        value = manifest.get(key)
        if value is None:
            continue
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidParameterError(f"manifest.{key}", "a list of strings", value)
            value = [v[:40] for v in value[:64]]
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidParameterError(f"manifest.{key}", f"a {kind.__name__}", value)
        out[key] = value[:200] if isinstance(value, str) else value
    if "onnxruntime" not in out or "cpu" not in out:
        raise InvalidParameterError("manifest", "an object with at least 'cpu' and "
                                    "'onnxruntime'", sorted(manifest)[:12])
    return out


def clean_latency(latency: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Latency figures per batch size: positive finite p50/p95 in ms."""
    out = {}
    for bs, figs in list(latency.items())[:16]:
        if not bs.isdigit() or not all(isinstance(figs.get(k), (int, float)) and
                                       math.isfinite(figs[k]) and figs[k] > 0
                                       for k in ("p50", "p95")):
            raise InvalidParameterError("latency_ms", '{"<batch>": {"p50": ms > 0, "p95": '
                                        'ms > 0}}', {bs: figs})
        out[bs] = {"p50": float(figs["p50"]), "p95": float(figs["p95"]),
                   "runs": int(figs.get("runs", 0))}
    if not out:
        raise InvalidParameterError("latency_ms", "figures for at least one batch size", {})
    return out


class DeviceStore:
    """``root/devices/<space>/<device id>.json``: a manifest and figures per variant."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "devices"
        self._lock = threading.Lock()

    def _dir(self, space: str) -> Path:
        return self.root / _space_key(space)

    def _path(self, space: str, device_id: str) -> Path:
        if not _ID.match(device_id or ""):
            raise DeviceNotFoundError(f"Device '{str(device_id)[:40]}' is not registered here.")
        return self._dir(space) / f"{device_id}.json"

    def register(self, space: str, manifest: dict[str, Any]) -> dict[str, Any]:
        folder = self._dir(space)
        folder.mkdir(parents=True, exist_ok=True)
        if len(list(folder.glob("*.json"))) >= MAX_DEVICES:
            raise InvalidParameterError("devices", f"at most {MAX_DEVICES} per session",
                                        "one more")
        record = {"device_id": secrets.token_hex(6), "manifest": clean_manifest(manifest),
                  "registered_at": _now(), "figures": {}}
        self._write(space, record)
        return record

    def get(self, space: str, device_id: str) -> dict[str, Any]:
        path = self._path(space, device_id)
        if not path.is_file():
            raise DeviceNotFoundError(f"Device '{device_id}' is not registered here.")
        return json.loads(path.read_text())

    def list(self, space: str) -> list[dict[str, Any]]:
        records = [json.loads(p.read_text()) for p in self._dir(space).glob("*.json")]
        return sorted(records, key=lambda r: r["registered_at"])

    def add_figures(self, space: str, device_id: str, run_id: str,
                    latency_ms: dict[str, Any], *, threads: int, protocol: dict[str, Any]
                    ) -> dict[str, Any]:
        entry = {"latency_ms": clean_latency(latency_ms), "threads": threads,
                 "protocol": {k: protocol[k] for k in list(protocol)[:16]},
                 "measured_at": _now()}
        with self._lock:
            record = self.get(space, device_id)
            record["figures"][run_id] = entry
            self._write(space, record)
        return {"device_id": device_id, "run_id": run_id, **entry}

    def _write(self, space: str, record: dict[str, Any]) -> None:
        path = self._path(space, record["device_id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)

    # --- a workspace hands a token to a device -------------------------------------------
    def link(self, owner: str, space: str) -> None:
        """Make ``owner`` (a token's owner) act for ``space`` (e.g. a studio workspace)."""
        links = self.root / "links"
        links.mkdir(parents=True, exist_ok=True)
        (links / _space_key(owner)).write_text(space)

    def space_of(self, owner: str) -> str:
        path = self.root / "links" / _space_key(owner)
        return path.read_text().strip() if path.is_file() else owner


def onnx_files(run_dir: Path) -> list[dict[str, Any]]:
    """``model.onnx`` and its external data of a run, with bytes and SHA-256 (from the run's
    report where it lists them)."""
    from core.artifacts import read_report
    from core.artifacts._onnx import onnx_files as files_of

    listed = {a.get("path"): a for a in read_report(run_dir).get("artifacts", [])}
    out = []
    for f in files_of(run_dir / "model.onnx"):
        entry = listed.get(f.name) or {}
        sha = entry.get("sha256") if entry.get("bytes") == f.stat().st_size else None
        if sha is None:
            digest = hashlib.sha256()
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            sha = digest.hexdigest()
        out.append({"name": f.name, "bytes": f.stat().st_size, "sha256": sha})
    return out


def session_variants(root: str | Path, space: str, jobs: Any = None) -> dict[str, Path]:
    """Run folders of a space that hold a model.onnx: a workspace's (``ui:<folder>``) runs,
    or a REST owner's succeeded jobs."""
    root = Path(root)
    if space.startswith("ui:"):
        folder = root / "sessions" / space[3:]
        runs = [p for p in folder.iterdir()] if folder.is_dir() else []
    else:
        runs = [Path(j.result_path) for j in (jobs.list(space, status="succeeded")
                                               if jobs is not None else []) if j.result_path]
    return {p.name: p for p in sorted(runs, key=lambda p: p.name)
            if (p / "report.json").is_file() and (p / "model.onnx").is_file()}


def add_device_routes(app: Any, *, store: DeviceStore, owner: Any,
                      variants_of: VariantsOf) -> None:
    """The /api/devices routes (agent protocol); ``owner`` is the token dependency."""
    from fastapi import Depends
    from fastapi.responses import FileResponse, JSONResponse

    from core.serving._protocol import protocol

    @app.exception_handler(DeviceNotFoundError)
    async def not_found(request: Any, exc: DeviceNotFoundError) -> Any:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    def space(who: str = Depends(owner)) -> str:
        return store.space_of(who)

    def variant(sp: str, run_id: str) -> Path:
        found = variants_of(sp).get(run_id) if _ID.match(run_id or "") else None
        if found is None:
            raise DeviceNotFoundError(f"Variant '{run_id[:80]}' is not one of this session's "
                                      "ONNX variants.")
        return found

    @app.get("/api/devices/protocol", tags=["devices"])
    def get_protocol() -> dict[str, Any]:
        """The latency protocol an agent runs (batch sizes, budget, rounds, warm-up)."""
        return protocol()

    @app.post("/api/devices", status_code=201, tags=["devices"])
    def register(body: Registration, sp: str = Depends(space)) -> dict[str, Any]:
        """Register a device by its manifest; returns its id."""
        return store.register(sp, body.manifest)

    @app.get("/api/devices", tags=["devices"])
    def devices(sp: str = Depends(space)) -> dict[str, Any]:
        """This session's devices, their manifests and figures."""
        return {"devices": store.list(sp)}

    @app.get("/api/devices/variants", tags=["devices"])
    def list_variants(sp: str = Depends(space)) -> dict[str, Any]:
        """This session's variants an agent can time (ONNX files, sizes, SHA-256)."""
        return {"variants": [{"id": rid, "files": onnx_files(path)}
                             for rid, path in variants_of(sp).items()]}

    @app.get("/api/devices/variants/{run_id}/files/{name}", tags=["devices"])
    def download(run_id: str, name: str, sp: str = Depends(space)) -> Any:
        """One ONNX file of a variant (model.onnx or its external data)."""
        path = variant(sp, run_id)
        allowed = {f["name"] for f in onnx_files(path)}
        if name not in allowed:
            raise DeviceNotFoundError(f"'{name[:80]}' is not an ONNX file of '{run_id}'.")
        return FileResponse(path / name, media_type="application/octet-stream", filename=name)

    @app.post("/api/devices/{device_id}/figures", status_code=201, tags=["devices"])
    def figures(device_id: str, body: Figures, sp: str = Depends(space)) -> dict[str, Any]:
        """Post a variant's latency measured on the device."""
        variant(sp, body.run_id)
        return store.add_figures(sp, device_id, body.run_id, body.latency_ms,
                                 threads=body.threads, protocol=body.protocol)
