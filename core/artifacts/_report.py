"""Run folders: report.json (schema optimization-studio/report/v1), staging and bundles."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import yaml

from core.artifacts._save import file_entry
from core.artifacts._trust import record_studio_made
from core.errors import StudioError

SCHEMA = "optimization-studio/report/v1"


def new_run_id(operation: str) -> str:
    """An unguessable run id such as ``quantize-3f9a1c2b7d4e5f60``."""
    return f"{operation}-{secrets.token_hex(8)}"


class OutputFolderError(StudioError):
    """``--out`` / ``out_dir`` names a folder the studio must not write (nothing was touched)."""


def staging_marker(tmp: Path) -> Path:
    """The file beside a ``<run>.partial`` folder that says the studio made it (and which
    process): only such folders are ever cleaned up. Beside, not inside: a run lists its files."""
    return tmp.with_name(f".{tmp.name}.studio")

_OVERWRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("studio_overwrite",
                                                                  default=False)


@contextlib.contextmanager
def allow_overwrite(allowed: bool = True) -> Iterator[None]:
    """Let every verb run inside this block replace an existing run folder (``--overwrite``)."""
    token = _OVERWRITE.set(bool(allowed))
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder the studio wrote: it holds a report.json of its schema."""
    report = Path(path) / "report.json"
    try:
        return report.is_file() and json.loads(report.read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def _input_path(given: Any) -> Path | None:
    """An input given as an existing path, resolved; None for anything else (a name, a model)."""
    if not isinstance(given, (str, Path)):
        return None
    try:
        path = Path(given)
        return path.absolute().resolve() if path.exists() else None
    except (OSError, RuntimeError, ValueError):  # too long a name, a link loop: not a path
        return None


def _input_folder(given: Any) -> Path | None:
    """The run folder an input is (or lives in), resolved; None for anything else."""
    src = _input_path(given)
    if src is not None and src.is_file():
        src = src.parent
    return src if src is not None and is_run_folder(src) else None


def _resolved(out: str | Path) -> Path:
    """``out`` as the folder it names: a link (``--out`` or a folder above it) is followed, so
    the run folder it points to is checked and replaced, never the link itself."""
    try:
        return Path(out).absolute().resolve()
    except (OSError, RuntimeError):
        raise OutputFolderError(f"The output '{Path(out).name}' cannot be resolved (a loop of "
                                "symbolic links?); give a folder path.") from None


def _check_inputs(final: Path, name: str, inputs: Sequence[Any]) -> None:
    """A variant never writes over, inside or around one of its inputs."""
    for given in inputs:
        src = _input_folder(given)
        if src is not None and (final == src or src in final.parents):
            raise OutputFolderError(
                f"The output folder '{name}' is (or is inside) the input run folder "
                f"'{src.name}': a variant never overwrites its parent. Choose another folder.")
        path = _input_path(given)
        if path is not None and final in path.parents:
            raise OutputFolderError(
                f"The output folder '{name}' holds the input '{path.name}': replacing it would "
                "delete the input. Choose another folder.")


def check_out_dir(out: str | Path, *, overwrite: bool = False,
                  inputs: Sequence[Any] = ()) -> None:
    """The one rule for where a verb may write its run folder (raises OutputFolderError).

    A new or empty folder is fine. An existing studio run folder is replaced only with
    ``overwrite``, and only if every entry in it is one the studio recorded writing there
    (:func:`foreign_entries`); any other existing folder or file is refused, untouched. A
    variant is never written over, inside or around one of its ``inputs``.
    """
    final = _resolved(out)
    name = Path(out).name or str(out)
    _check_inputs(final, name, inputs)
    if final.is_file():
        raise OutputFolderError(f"The output '{name}' is an existing file; give a folder path.")
    if not final.is_dir() or not any(final.iterdir()):
        return
    if not is_run_folder(final):
        raise OutputFolderError(
            f"The output folder '{name}' already exists and is not a studio run folder (no "
            "studio report.json); it was left untouched. Choose a new or empty folder.")
    replace = overwrite or _OVERWRITE.get()
    foreign = foreign_entries(final, digests=replace)  # by name and size only, if refused anyway
    if foreign:
        raise OutputFolderError(_foreign_message(final, name, foreign))
    if not replace:
        raise OutputFolderError(f"The output folder '{name}' already holds a studio run; pass "
                                "--overwrite (overwrite=True) to replace it.")


# --- What the studio wrote in a run folder: the only entries an overwrite may delete -----------

RUN_FILES = ".studio-files.json"  # in a run folder: every file and folder the studio wrote there
_FILES_SCHEMA = "optimization-studio/run-files/v1"


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _walk(folder: Path, descend: Callable[[str], bool] = lambda rel: True,
          ) -> Iterator[tuple[str, os.DirEntry]]:
    """Every entry under ``folder`` as (path relative to it, entry), never following a link;
    a subfolder is entered only where ``descend(rel)``."""
    stack = [(folder, "")]
    while stack:
        path, prefix = stack.pop()
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix + entry.name
                yield rel, entry
                if entry.is_dir(follow_symlinks=False) and descend(rel):
                    stack.append((Path(entry.path), rel + "/"))


def _write_json_atomic(path: Path, value: Any) -> None:
    part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    part.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(part, path)


def record_run_files(folder: str | Path) -> None:
    """Write ``folder/.studio-files.json``: every file (bytes, sha256) and subfolder in it, as
    the studio wrote them (links and special files are never recorded). Staging calls it just
    before a run folder takes its name."""
    folder = Path(folder)
    files, folders = {}, []
    for rel, entry in _walk(folder):
        if entry.is_dir(follow_symlinks=False):
            folders.append(rel)
        elif entry.is_file(follow_symlinks=False) and rel != RUN_FILES:
            files[rel] = {"bytes": entry.stat(follow_symlinks=False).st_size,
                          "sha256": _sha256(Path(entry.path))}
    _write_json_atomic(folder / RUN_FILES, {"schema": _FILES_SCHEMA, "files": files,
                                            "folders": folders})


def _add_run_file(run_dir: Path, path: Path) -> None:
    """Record one more file the studio wrote into a finished run folder (a bundle), if the
    folder has a file list (an older one without it keeps refusing an overwrite)."""
    if path.parent != run_dir or _recorded_files(run_dir) is None:
        return
    inventory = json.loads((run_dir / RUN_FILES).read_text())
    inventory["files"][path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    _write_json_atomic(run_dir / RUN_FILES, inventory)


def _recorded_files(folder: Path) -> tuple[dict[str, Any], set[str]] | None:
    """The files ({path: {bytes, sha256}}) and folders of ``folder``'s file list; None without
    a readable one."""
    try:
        inventory = json.loads((folder / RUN_FILES).read_text())
        if inventory.get("schema") != _FILES_SCHEMA:
            return None
        files = {str(k): dict(v) for k, v in inventory["files"].items()}
        return files, {str(f) for f in inventory["folders"]}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def _reported_files(folder: Path) -> tuple[dict[str, Any], set[str]]:
    """An older run folder without a file list: the files its report lists (bytes, sha256)
    and the folders that hold them."""
    try:
        listed = json.loads((folder / "report.json").read_text()).get("artifacts") or []
    except (OSError, ValueError, AttributeError):
        listed = []
    files = {Path(str(a["path"])).as_posix(): a for a in listed
             if isinstance(a, dict) and a.get("path")}
    folders = {p.as_posix() for f in files for p in Path(f).parents if str(p) != "."}
    return files, folders


def _same(entry: os.DirEntry, expected: Any, digests: bool) -> bool:
    """Whether a file is still what the studio wrote (size, and with ``digests`` its sha256)."""
    if not isinstance(expected, Mapping):
        return False
    if expected.get("bytes") != entry.stat(follow_symlinks=False).st_size:
        return False
    return not digests or expected.get("sha256") == _sha256(Path(entry.path))


def foreign_entries(folder: str | Path, *, digests: bool = True) -> list[str]:
    """Entries of a run folder the studio did not write there (relative paths): anything its
    file list (``.studio-files.json``) does not record, a file changed since (size, and with
    ``digests`` the sha256), any link. An older run folder without a file list is judged by
    its report: only report.json and the files the report lists, unchanged, are the studio's."""
    folder = Path(folder)
    recorded = _recorded_files(folder)
    files, folders = recorded if recorded is not None else _reported_files(folder)
    own = {RUN_FILES, "report.json"} if recorded is not None else {"report.json"}
    foreign = []
    for rel, entry in _walk(folder, descend=folders.__contains__):
        if entry.is_dir(follow_symlinks=False):
            ok = rel in folders
        elif not entry.is_file(follow_symlinks=False):
            ok = False  # a link (to a file or a folder anywhere) or a special file
        elif rel in own and rel not in files:
            ok = True
        else:
            ok = _same(entry, files.get(rel), digests)
        if not ok:
            foreign.append(rel)
    return foreign


def _foreign_message(folder: Path, name: str, foreign: Sequence[str]) -> str:
    shown = ", ".join(f"'{Path(rel).name}'" for rel in foreign[:4])
    more = f" and {len(foreign) - 4} more" if len(foreign) > 4 else ""
    older = "" if _recorded_files(folder) is not None else (
        " (it was written by an older studio without a file list: only the files its report "
        "lists count as the studio's)")
    return (f"The output folder '{name}' holds entries the studio did not write there or that "
            f"changed since: {shown}{more}{older}. --overwrite never deletes them; nothing was "
            "touched. Move them out or choose another --out folder.")


# --- Staging: a run folder appears whole, or not at all -----------------------------------------

def _tmp_for(final: Path) -> Path:
    """``<final>.partial``, cleared if a studio run that is no longer running left it; a user's
    folder of that name, or one a running studio process is writing, is refused, never
    deleted."""
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists() or tmp.is_symlink():
        if tmp.is_symlink() or not staging_marker(tmp).is_file():
            raise OutputFolderError(f"'{tmp.name}' exists and was not written by the studio; "
                                    "move it or choose another --out folder.")
        if not _orphaned(tmp, STALE_S):
            raise OutputFolderError(
                f"Another studio run is writing '{final.name}' now ('{tmp.name}'); wait for it "
                f"or choose another --out folder (if none is running, delete '{tmp.name}').")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    staging_marker(tmp).write_text(json.dumps({"pid": os.getpid(),
                                               "host": socket.gethostname()}))
    return tmp


@contextlib.contextmanager
def staging(run_dir: str | Path, *, overwrite: bool = False,
            inputs: Sequence[Any] = ()) -> Iterator[Path]:
    """Write into ``<run_dir>.partial`` and rename on success; on error nothing is left.

    ``run_dir`` must pass :func:`check_out_dir` (``overwrite``, or an enclosing
    :func:`allow_overwrite`, lets it replace an earlier run folder that holds only what the
    studio wrote). The folder records its files (``.studio-files.json``) as it takes its name.
    """
    check_out_dir(run_dir, overwrite=overwrite, inputs=inputs)
    final = _resolved(run_dir)  # through a link: the folder it names
    tmp = _tmp_for(final)
    try:
        yield tmp
        record_run_files(tmp)
        check_out_dir(run_dir, overwrite=overwrite, inputs=inputs)  # nothing appeared meanwhile
        _replace(final, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        staging_marker(tmp).unlink(missing_ok=True)


def _replace(final: Path, tmp: Path) -> None:
    """Rename ``tmp`` to ``final``. An earlier run folder there is moved aside, checked once
    more (nothing foreign arrived since :func:`check_out_dir`), and deleted only once the new
    one is in place; if anything fails before that, it is put back."""
    if not final.is_dir() or not any(final.iterdir()):
        if final.is_dir():
            final.rmdir()
        tmp.rename(final)
        return
    old = final.with_name(f"{final.name}.old-{secrets.token_hex(4)}")
    final.rename(old)
    try:
        foreign = foreign_entries(old, digests=False)
        if foreign:
            raise OutputFolderError(_foreign_message(old, final.name, foreign))
        tmp.rename(final)
    except BaseException:
        old.rename(final)  # the earlier run back where it was: nothing lost
        raise
    shutil.rmtree(old, ignore_errors=True)  # only what the studio wrote, checked just above


STALE_S = 86400.0  # a staging folder written on another host is abandoned after a day


def clean_orphans(root: str | Path, *, stale_s: float = STALE_S) -> list[str]:
    """Delete ``*.partial`` folders under ``root`` that a studio process left when it was
    killed: only those with the studio's marker whose writer is no longer running on this
    host (or, written on another host, e.g. before a container restart, older than
    ``stale_s``). Returns the names removed. Call it once at server start-up."""
    removed = []
    for folder, dirs, _ in os.walk(root):
        for d in list(dirs):
            path = Path(folder) / d
            if d.endswith(".partial"):
                dirs.remove(d)  # never descend into a staging folder
                if _orphaned(path, stale_s):
                    shutil.rmtree(path, ignore_errors=True)
                    staging_marker(path).unlink(missing_ok=True)
                    removed.append(d)
    return removed


def _orphaned(tmp: Path, stale_s: float) -> bool:
    marker = staging_marker(tmp)
    try:
        mark = json.loads(marker.read_text())
        age = time.time() - marker.stat().st_mtime
    except (OSError, ValueError):
        return False  # not written by the studio (or unreadable): never touched
    if not isinstance(mark, dict):
        return False
    if mark.get("host") != socket.gethostname():
        return age > stale_s
    try:
        os.kill(int(mark.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, TypeError):
        return False  # alive (perhaps another user's), or an odd marker: keep it
    return False


def ratios(baseline: Any, result: Any) -> dict[str, float | None]:
    """Speed-ups (baseline p50 / result p50) per batch size, size reduction, accuracy delta."""
    if baseline is None or result is None:
        return {}
    out: dict[str, float | None] = {}
    for bs in result.latency_ms:
        b, r = baseline.p50(int(bs)), result.p50(int(bs))
        out[f"speedup_b{bs}"] = b / r if b and r else None
    out["size_reduction"] = baseline.size_bytes / result.size_bytes if result.size_bytes else None
    out["accuracy_delta"] = result.accuracy - baseline.accuracy
    return out


def speed_verdicts(ratio_map: Mapping[str, float | None]) -> dict[str, str | None]:
    """The one speed verdict (core.measure.speed_verdict) per ``speedup_b*`` ratio."""
    from core.measure import speed_verdict

    return {k: speed_verdict(v) for k, v in ratio_map.items() if k.startswith("speedup_b")}


def speed_warnings(baseline: Any, result: Any, label: str, *,
                   against: str = "the baseline") -> list[str]:
    """Plain warnings for each batch size at which the result is not faster than ``against``:
    slower beyond the measured noise band, or no faster (a tie within it)."""
    from core.measure import FASTER, isa_text, speed_phrase

    notes = []
    values = ratios(baseline, result)
    for key, verdict in speed_verdicts(values).items():
        if verdict is None or verdict == FASTER:
            continue
        bs = key.removeprefix("speedup_b")
        notes.append(f"{label} is {speed_phrase(values[key], against)} at batch {bs} on this "
                     f"CPU ({isa_text()}).")
    return notes


def build_report(
    *,
    operation: str,
    method: str | None,
    config: Mapping[str, Any],
    seed: int,
    baseline: Any,
    result: Any,
    artifacts: list[dict[str, Any]],
    environment: Mapping[str, Any],
    warnings: Sequence[str] = (),
    parent: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A report dict in the DESIGN.md schema."""
    return {
        "schema": SCHEMA,
        "operation": operation,
        "method": method,
        "config": dict(config),
        "seed": seed,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parent": parent,
        "baseline": baseline.to_dict() if baseline is not None else None,
        "result": result.to_dict() if result is not None else None,
        "ratios": ratios(baseline, result),
        "speed_verdicts": speed_verdicts(ratios(baseline, result)),
        "artifacts": artifacts,
        "environment": dict(environment),
        "warnings": list(warnings),
        **dict(extra or {}),
    }


def write_report(run_dir: str | Path, report: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / "report.json"
    path.write_text(json.dumps(report, indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_report(run_dir: str | Path) -> dict[str, Any]:
    from core.errors import ModelFileError

    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise ModelFileError(f"'{Path(run_dir).name}' is not a studio run folder (no "
                             "report.json).")
    return json.loads(path.read_text())


def write_run(
    run_dir: str | Path,
    *,
    operation: str,
    method: str | None,
    config: Mapping[str, Any],
    data: Any,
    result_model: Any,
    result_files: Sequence[str | Path],
    baseline_model: Any = None,
    baseline_files: Sequence[str | Path] = (),
    seed: int = 0,
    warnings: Sequence[str] = (),
    parent: str | None = None,
    extra: Mapping[str, Any] | None = None,
    label: str | None = None,
    measure_options: Mapping[str, Any] | None = None,
    callbacks: Any = None,
    references: Mapping[str, tuple[str, Any, Sequence[str | Path]]] | None = None,
) -> dict[str, Any]:
    """Measure result (and baseline) side by side, then write report.json in ``run_dir``.

    ``result_files`` are the artifacts already saved in ``run_dir`` whose bytes are the
    result's size; every file in ``run_dir`` is listed in the report with its sha256.
    ``references`` (name → (description, model, files)) are timed in the same run too, and
    reported under ``references`` with the result's ratios against each (e.g. an INT8 model
    against ONNX Runtime FP32 of the same weights, not only against torch eager).
    """
    from core.measure import environment_manifest, measure_many

    opts = dict(measure_options or {})
    refs = dict(references or {})
    models = {"result": result_model}
    files = {"result": list(result_files)}
    if baseline_model is not None:
        models = {"baseline": baseline_model, **models}
        files["baseline"] = list(baseline_files)
    for name, (_, model, ref_files) in refs.items():
        models[f"ref:{name}"], files[f"ref:{name}"] = model, list(ref_files)
    record_studio_made(list(result_files))  # the studio's own .pt/.pt2 load without opt-in
    # the baseline's accuracy, counts and memory come from its run folder's report where
    # that proves the same measurement (same files, rows, machine); latency is always timed
    opts.setdefault("reuse_parents", ("baseline",))
    measured = measure_many(models, data, files=files, callbacks=callbacks, **opts)
    base, res = measured.get("baseline"), measured["result"]
    notes = list(warnings)
    label = label or method or operation
    if base is not None:
        notes += speed_warnings(base, res, label)
    compared = {}
    for name, (what, _, _) in refs.items():
        ref = measured[f"ref:{name}"]
        vs = ratios(ref, res)
        compared[name] = {"what": what, "measured": ref.to_dict(), "ratios": vs,
                          "speed_verdicts": speed_verdicts(vs)}
        notes += speed_warnings(ref, res, label, against=what)
    if compared:
        extra = {**dict(extra or {}), "references": compared}
    run_dir = Path(run_dir)
    artifacts = [file_entry(p, run_dir) for p in sorted(run_dir.rglob("*"))
                 if p.is_file() and p.name not in ("report.json", RUN_FILES)]
    report = build_report(
        operation=operation, method=method, config=config, seed=seed, baseline=base,
        result=res, artifacts=artifacts, warnings=notes, parent=parent, extra=extra,
        environment=environment_manifest(threads=res.threads),
    )
    report["data"] = data.spec.to_dict()
    write_report(run_dir, report)
    return report


def model_card(report: Mapping[str, Any]) -> str:
    """A short Markdown model card: what was done, the figures, the environment."""
    res = report.get("result") or {}
    output = (report.get("onnx") or {}).get("output_name")  # several outputs: the scored one
    lat = res.get("latency_ms", {})
    env = report.get("environment", {})
    lines = [
        f"# Model card — {report.get('operation')} ({report.get('method') or 'baseline'})",
        "",
        f"Created {report.get('created_at')} by Optimization Studio. Data: "
        f"`{(report.get('data') or {}).get('source')}`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| accuracy | {res.get('accuracy', float('nan')):.4f} |",
        f"| macro F1 | {res.get('f1_macro', float('nan')):.4f} |",
        f"| size on disk | {res.get('size_bytes', 0):,} bytes |",
        f"| parameters (non-zero) | {res.get('params', 0):,} ({res.get('nonzero_params', 0):,}) |",
    ]
    for bs, v in lat.items():
        lines.append(f"| latency batch {bs} p50 / p95 | {v['p50']:.3f} / {v['p95']:.3f} ms |")
    verdicts = report.get("speed_verdicts") or {}
    for key, value in (report.get("ratios") or {}).items():
        if value is not None:
            verdict = f" ({verdicts[key]})" if verdicts.get(key) else ""
            lines.append(f"| {key} | {value:.3f}{verdict} |")
    timed = (res.get("extra") or {}).get("timed_with")
    parent = f", `{report['parent']}`," if report.get("parent") else ","
    against = (f" Ratios are against the baseline{parent} timed side by side in the same run."
               if report.get("ratios") else "")
    lines += ["", f"Measured on {env.get('cpu')} ({', '.join(env.get('isa', []))}), "
              f"{env.get('threads')} thread(s){f', timed with {timed}' if timed else ''}, "
              f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}.{against}", ""]
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    files = {Path(a.get("path", "")).name for a in report.get("artifacts") or []}
    lines += ["## Use it", ""]
    if "model.onnx" in files or "model.pt2" not in files:
        lines += ["```python", "import numpy as np, onnxruntime as ort",
                  "sess = ort.InferenceSession('model.onnx')  # model.onnx.data beside it, if any",
                  "feed = {sess.get_inputs()[0].name: x.astype(np.float32)}",
                  f"scores = sess.run({[output] if output else None}, feed)[0]", "```", ""]
    if "model.pt2" in files:
        lines += _pt2_usage(report)
    return "\n".join(lines)


def _pt2_usage(report: Mapping[str, Any]) -> list[str]:
    """How to run a torch.export program; INT8 (PT2E) ones compiled, as they were measured."""
    compiled = ((report.get("quantization") or {}).get("compile") or {})
    lines = ["```python", "import torch"]
    if compiled:
        lines += ["import torchao  # registers the INT8 (quantize/dequantize) operators",
                  "torch._inductor.config.freezing = True",
                  # one graph per batch size: automatic dynamic shapes fail in inductor
                  # 2.13's INT8 conv lowering at a second batch size
                  "model = torch.compile(torch.export.load('model.pt2').module(), "
                  "dynamic=False)"]
    else:
        lines += ["model = torch.export.load('model.pt2').module()"]
    lines += ["with torch.inference_mode():", "    scores = model(x)", "```", ""]
    if compiled:
        seconds = compiled.get("seconds_by_batch") or {}
        lines += ["The INT8 program is fast only compiled (uncompiled it runs quantize/dequantize "
                  "in float). The first call at each batch size compiles"
                  + (f" ({', '.join(f'batch {b}: {s:.1f} s' for b, s in seconds.items())} "
                     "here)" if seconds else "") + "; the latencies above exclude it.", ""]
    return lines


def _public_text(path: Path, run_dir: Path) -> str | None:
    """A text file of the run as it leaves the server (None: as it is): report.json with
    paths cut to names, other texts without the location of the run's folder."""
    if path.suffix not in (".json", ".yaml", ".yml", ".md", ".csv", ".txt"):
        return None
    text = path.read_text(errors="replace")
    if path == run_dir / "report.json":
        return json.dumps(public_report(json.loads(text)), indent=2)
    where = f"{run_dir.resolve().parent}{os.sep}"
    return text.replace(where, "") if where in text else None


# What a search tried on its way (auto's candidates, a study's trials) is not the variant.
_WORK_FOLDERS = {"candidates", "comparison", "comparisons", "trials"}


def public_report(value: Any) -> Any:
    """``value`` (a report or part of one) with every absolute path cut to its last part: what
    leaves the server (a bundle) names files, never where they live."""
    if isinstance(value, Mapping):
        return {k: public_report(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_report(v) for v in value]
    if isinstance(value, str) and _server_path(value):
        return Path(value).name
    return value


def _server_path(text: str) -> bool:
    """An absolute path on this machine: its top folder exists (ONNX node names such as
    '/features/features.0/Conv' look absolute too and must stay whole)."""
    if len(text) < 2 or "\n" in text or not os.path.isabs(text):
        return False
    top = Path(text).parts[:2]
    return len(top) == 2 and Path(*top).exists()


def _bundle_recipe(run_dir: Path, report: Mapping[str, Any]) -> str:
    """recipe.yaml: the steps that made the variant, which ``studio run`` replays (its model
    and data files by name, beside where it runs); the run's own config where its lineage
    cannot be replayed (its root is not here, or a step is no recipe step)."""
    from core.recipes._run import recipe_from_lineage

    try:
        recipe = recipe_from_lineage(run_dir).to_dict()
    except StudioError:
        return yaml.safe_dump({k: report.get(k) for k in ("operation", "method", "config",
                                                          "data", "seed", "parent")},
                              sort_keys=False)
    return shareable_recipe_yaml(recipe)


def shareable_recipe_yaml(recipe: Mapping[str, Any]) -> str:
    """A recipe (``Recipe.to_dict()``) as YAML to hand to a user: ``studio run`` replays it
    beside their model and data files, named only; no server path anywhere in it (steps name
    files too, e.g. a multi-teacher distill's extra teachers)."""
    recipe = dict(recipe)
    for key in ("model", "data"):
        if isinstance(recipe.get(key), str):
            recipe[key] = Path(recipe[key]).name
    return yaml.safe_dump(public_report(recipe), sort_keys=False)


def make_bundle(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Zip a run folder with its model files, report.json, a model card and its config (paths
    in the report cut to file names)."""
    run_dir = Path(run_dir)
    report = public_report(read_report(run_dir))
    out = Path(out_path) if out_path else run_dir / "bundle.zip"
    recipe = _bundle_recipe(run_dir, report)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(run_dir.rglob("*")):
            inner = p.relative_to(run_dir)
            if p.is_file() and p != out and p.suffix != ".zip" and p.name != RUN_FILES and \
                    not _WORK_FOLDERS.intersection(inner.parts[:-1]):
                public = _public_text(p, run_dir)
                if public is None:
                    zf.write(p, inner)
                else:
                    zf.writestr(str(inner), public)
        written = set(zf.namelist())  # a run's own recipe (auto, recipes) is the better one
        if "MODEL_CARD.md" not in written:
            zf.writestr("MODEL_CARD.md", model_card(report))
        if "recipe.yaml" not in written:
            zf.writestr("recipe.yaml", recipe)
        if "model.onnx" in written:  # it can be served: a container recipe for it
            from core.serving import container_files

            model = [n for n in written if n == "model.onnx" or n.startswith("model.onnx.")]
            output = (report.get("onnx") or {}).get("output_name")
            for name, text in container_files(model_files=model, output_name=output).items():
                if name not in written:
                    zf.writestr(name, text)
    _add_run_file(run_dir.resolve(), out.resolve())  # written into the run: the studio's too
    return out
