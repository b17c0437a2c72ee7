"""The auto-optimizer: propose recipes for this hardware, run them, measure, pick, explain."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from core.auto._candidates import EXPORT, STATIC_INT8, Candidate, propose, prune_steps
from core.auto._config import AutoConfig
from core.callbacks import Callbacks
from core.errors import CancelledError, InvalidParameterError, StudioError
from core.registry import resolve_config

if TYPE_CHECKING:
    from core.runs import RunResult

__all__ = ["auto", "choose", "reselect"]

MODEL_FILES = ("model.json", "model.safetensors", "model.sparse.npz", "model.onnx",
               "model.onnx.data", "model.pt", "model.pt2")


def _baseline(model: Any, data: Any, cfg: AutoConfig, out: Path, cb: Callbacks,
              mopts: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline run folder, the first step's input, the data set and the family."""
    import torch

    from core.artifacts import save_model, staging, write_run
    from core.inputs import open_data, open_input
    from core.models import is_builtin, list_families
    from core.runs import benchmark_model, train_baseline
    from core.training import TrainConfig

    if isinstance(model, str) and model in list_families() and not Path(model).exists():
        dataset = open_data("digits" if data is None else data, seed=cfg.seed)
        report = train_baseline(model, dataset, out_dir=out, callbacks=cb,
                                config=TrainConfig(epochs=cfg.train_epochs, seed=cfg.seed),
                                measure_options=mopts).report
        return {"dir": out, "start": out, "data": dataset, "family": model,
                "train": {"model": model, "model_kwargs": report["config"]["model_kwargs"],
                          "epochs": cfg.train_epochs, "seed": cfg.seed}}
    inp = open_input(model, data, seed=cfg.seed)  # a run folder, a model file or a module
    dataset = inp.data
    if inp.run_id is not None:
        family = inp.meta.get("family") if inp.kind == "builtin" else None
        return {"dir": inp.path, "start": inp.path, "data": dataset, "family": family}
    if inp.path is not None:  # a model file: measured into the baseline run folder
        benchmark_model(inp.path, dataset, out_dir=out, callbacks=cb, measure_options=mopts)
        return {"dir": out, "start": out, "data": dataset, "family": None}
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError("model", "a family name, a run folder, a model file or a "
                                    "torch.nn.Module", type(model).__name__)
    model.eval()
    with staging(out) as tmp:
        notes: list[str] = []
        if is_builtin(model):
            save_model(model, tmp, data=dataset)
            files = [tmp / "model.safetensors"]
        else:  # a torch.export program keeps it loadable as torch; the module feeds the steps
            files, notes = _save_program(model, dataset, tmp)
        write_run(tmp, operation="benchmark", method=None, config={"model": type(model).__name__},
                  data=dataset, result_model=model, result_files=files, callbacks=cb,
                  measure_options=mopts, **({"warnings": notes} if notes else {}))
    family = model.family if is_builtin(model) else None
    return {"dir": out, "start": out if is_builtin(model) else model, "data": dataset,
            "family": family}


def _save_program(model: Any, dataset: Any, tmp: Path) -> tuple[list[Path], list[str]]:
    """The module as a torch.export ``model.pt2`` (batch dynamic), recorded as studio-made."""
    import torch

    from core.artifacts._trust import record_studio_made
    from core.errors import UnsupportedModelError
    from core.quantization._pt2e import export_program

    try:
        program = export_program(model, torch.from_numpy(dataset.X_test[:2]))
    except UnsupportedModelError as exc:
        return [], [f"{exc} The size is that of its weights serialized in memory."]
    torch.export.save(program, str(tmp / "model.pt2"))
    record_studio_made([tmp / "model.pt2"])
    return [tmp / "model.pt2"], []


def _ratio_text(value: float | None, what: str) -> str:
    if value is None:
        return f"{what}: not measured"
    if what == "faster":  # the one speed verdict, with the measured noise band
        from core.measure import NO_FASTER, SLOWER, speed_verdict

        verdict = speed_verdict(value)
        if verdict == NO_FASTER:
            return f"no faster ({value:.2f}×, within the measured noise)"
        return f"{1 / value:.2f}× slower" if verdict == SLOWER else f"{value:.2f}× faster"
    if value >= 1:
        return f"{value:.2f}× {what}"
    return f"{1 / value:.2f}× larger"


def _p50(r: Mapping[str, Any], bs: int) -> float | None:
    return r.get(f"p50_b{bs}")


def choose(rows: list[dict[str, Any]], target: str, tolerance: float, *, batch_size: int = 64,
           latency_budget_ms: float | None = None) -> dict[str, Any]:
    """Pick the winner among rows (each with ``val_drop``) within tolerance, Pareto first.

    Latency is ranked at ``batch_size`` (the deployment target's), among the rows whose p50
    there is within ``latency_budget_ms`` (all rows if none is). The Pareto front is that of
    the eligible rows: a row outside the tolerance never hides one inside it.
    """
    from core.compare import pareto_front

    eligible = [r for r in rows if r.get("ok") and r["val_drop"] <= tolerance + 1e-12]
    if not eligible:
        raise StudioError("No variant (not even the baseline) could be measured.")
    if latency_budget_ms is not None:
        eligible = [r for r in eligible if (_p50(r, batch_size) or math.inf)
                    <= latency_budget_ms] or eligible
    front = {id(eligible[i]) for i in pareto_front(
        eligible, (("size_bytes", "min"), (f"p50_b{batch_size}", "min"), ("accuracy", "max")))}
    pool = [r for r in eligible if id(r) in front] or eligible
    lat = f"p50_b{batch_size}"

    def key(r: dict[str, Any]) -> tuple:
        p = r.get(lat) if r.get(lat) is not None else math.inf
        if target == "speed":
            return (p, r["size_bytes"])
        if target == "size":
            return (r["size_bytes"], p)
        if target == "accuracy":
            return (-r["val_accuracy"], -r["accuracy"], p)
        score = math.sqrt((r.get(f"speedup_b{batch_size}") or 0)
                          * (r.get("size_reduction") or 0))
        return (-score, -r["val_accuracy"])

    return min(pool, key=key)


def pick_per_batch(rows: list[dict[str, Any]], target: str, tolerance: float,
                   deployment: Any) -> dict[str, dict[str, Any]]:
    """The pick at each of the deployment target's batch sizes, with the measured figures
    that decided it (``{"1": {winner, p50_ms, runner_up, runner_up_p50_ms, why}}``)."""
    out: dict[str, dict[str, Any]] = {}
    budget = deployment.latency_budget_ms
    for bs in deployment.batch_sizes:
        if not any(_p50(r, bs) for r in rows):
            continue
        win = choose(rows, target, tolerance, batch_size=bs, latency_budget_ms=budget)
        rest = [r for r in rows if r is not win and r.get("ok") and _p50(r, bs)
                and r["val_drop"] <= tolerance + 1e-12]
        runner = min(rest, key=lambda r: _p50(r, bs), default=None)
        p, q = _p50(win, bs), _p50(runner, bs) if runner else None
        why = f"batch {bs}: {win['name']} p50 {p:.3f} ms" if p else f"batch {bs}: {win['name']}"
        if runner and p and q:
            why += (f"; the fastest other variant within the tolerance, {runner['name']}, "
                    f"{q:.3f} ms ({q / p:.2f}× its latency)")
        eff = win.get(f"peak_share_b{bs}")
        if eff is not None:
            why += f"; {win.get(f'gmacs_b{bs}') or 0:.1f} GMAC/s, {eff * 100:.0f} % of this " \
                   "CPU's measured peak"
        within = budget is None or (p is not None and p <= budget)
        if budget is not None:
            why += (f"; within the {budget:g} ms budget" if within else
                    f"; no variant met the {budget:g} ms budget, the fastest is shown")
        out[str(bs)] = {"winner": win["name"], "p50_ms": p, "within_budget": within,
                        "runner_up": runner["name"] if runner else None,
                        "runner_up_p50_ms": q, "why": why + "."}
    return out


def _fp32_twin(r: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """For a quantized candidate: the candidate with the same steps but ORT FP32 instead."""
    steps = r.get("steps") or []
    if not steps or "quantize" not in steps[-1]:
        return None
    twin_steps = [*steps[:-1], EXPORT]
    return next((o for o in rows if o is not r and o.get("steps") == twin_steps), None)


def _speed_reasons(r: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Why a candidate is not faster: the one speed verdict against the baseline and, for INT8,
    against the same weights in ONNX Runtime FP32."""
    from core.measure import (
        FASTER,
        SLOWER,
        int8_dot_product,
        int8_dot_text,
        speed_phrase,
        speed_verdict,
    )

    parts = []
    for bs in ("64", "1"):
        s = r.get(f"speedup_b{bs}")
        if speed_verdict(s) not in (None, FASTER):
            parts.append(f"it was {speed_phrase(s, 'the FP32 baseline')} at batch {bs} here")
    twin = _fp32_twin(r, rows)
    vs_twin = twin["p50_b64"] / r["p50_b64"] if twin is not None and r.get("p50_b64") \
        and twin.get("p50_b64") else None
    if speed_verdict(vs_twin) == SLOWER:
        note = "" if int8_dot_product() else f" ({int8_dot_text()})"
        parts.append(f"its INT8 model was {speed_phrase(vs_twin, twin['name'])} (the same "
                     f"weights in ONNX Runtime FP32) at batch 64{note}")
    return parts


def _why_lost(r: dict[str, Any], win: dict[str, Any], target: str, tol: float,
              rows: list[dict[str, Any]], bs: int = 64) -> str:
    if r.get("skipped"):
        return f"skipped: {r['skipped']}."
    if r.get("error"):
        return f"failed: {r['error']}"
    parts = _speed_reasons(r, rows)
    if r["val_drop"] > tol + 1e-12:
        parts.append(f"it lost {r['val_drop'] * 100:.2f} pt of validation accuracy (tolerance "
                     f"{tol * 100:.2f} pt)")
    if not r.get("pareto"):
        from core.compare import dominates
        from core.compare._compare import PARETO_OBJECTIVES

        by = next((o["name"] for o in rows if o is not r and o.get("ok")
                   and dominates(o, r, PARETO_OBJECTIVES)), None)
        if by:
            parts.append(f"{by} is smaller, faster and at least as accurate (not on the Pareto "
                         "front)")
    if not parts:
        if target == "speed":
            parts.append(f"{_ratio_text(r.get(f'speedup_b{bs}'), 'faster')} at batch {bs} vs "
                         f"the winner's {win.get(f'speedup_b{bs}') or 0:.2f}×")
        elif target == "size":
            parts.append(f"{_ratio_text(r.get('size_reduction'), 'smaller')} vs the winner's "
                         f"{win.get('size_reduction') or 0:.2f}×")
        elif target == "accuracy":
            parts.append(f"validation accuracy {r['val_accuracy']:.4f} vs the winner's "
                         f"{win['val_accuracy']:.4f}"
                         + (" (equal, but slower)" if r["val_accuracy"] == win["val_accuracy"]
                            else ""))
        else:
            parts.append(f"speed-up × size reduction {r.get('balanced_score', 0):.2f} vs the "
                         f"winner's {win.get('balanced_score', 0):.2f} (geometric mean)")
    return "; ".join(parts) + "."


def _winner_text(win: dict[str, Any], base: dict[str, Any], target: str, tol: float,
                 bs: int = 64, small: int | None = 1) -> str:
    if win["name"] == "baseline":
        return (f"The baseline stays the best choice for '{target}': no candidate was better "
                f"within the validation-accuracy tolerance of {tol * 100:.2f} pt.")
    p, b = win.get(f"p50_b{bs}"), base.get(f"p50_b{bs}")
    lat = f" (p50 {p:.3f} ms vs {b:.3f} ms)" if p and b else ""
    other = (f"{_ratio_text(win.get(f'speedup_b{small}'), 'faster')} at batch {small}, "
             if small is not None and small != bs else "")
    text = (
        f"{win['name']} wins for target '{target}': "
        f"{_ratio_text(win.get(f'speedup_b{bs}'), 'faster')} at batch {bs}{lat}, {other}"
        f"{_ratio_text(win.get('size_reduction'), 'smaller')} on disk "
        f"({win['size_bytes'] / 1024:.1f} KB vs {base['size_bytes'] / 1024:.1f} KB); "
        f"validation accuracy {0.0 - win['val_drop'] * 100:+.2f} pt (tolerance "
        f"{tol * 100:.2f} pt), test accuracy {win['accuracy_delta'] * 100 + 0.0:+.2f} pt.")
    if win.get("pareto"):
        text += " It is on the Pareto front of size, latency and accuracy."
    return text


def _next_sparsity(results: list[dict[str, Any]], tolerance: float) -> float | None:
    """The next sparsity to try: the midpoint of the bracket around the tolerance."""
    tried: dict[float, bool] = {}
    for e in results:
        steps = e.get("steps") or []
        if "val_drop" not in e or not steps or "prune" not in steps[0]:
            continue
        sp = float(steps[0]["prune"]["sparsity"])
        tried[sp] = tried.get(sp, False) or e["val_drop"] <= tolerance + 1e-12
    if not tried:
        return None
    ok = [sp for sp, good in tried.items() if good]
    bad = [sp for sp, good in tried.items() if not good and sp > max(ok, default=0.0)]
    low = max(ok, default=0.0)
    high = min(bad, default=0.9)
    mid = round((low + high) / 2, 2)
    if high - low < 0.08 or any(abs(mid - sp) < 0.02 for sp in tried):
        return None
    return mid


def _shared_prefix(steps: list[dict[str, Any]], done: list[dict[str, Any]]
                   ) -> tuple[int, dict[str, Any]]:
    """The longest run of leading steps an earlier successful candidate already ran."""
    best: tuple[int, dict[str, Any]] = (0, {})
    for prev in done:
        if "dirs" not in prev:
            continue
        k = 0
        while k < min(len(steps) - 1, len(prev["steps"])) and steps[k] == prev["steps"][k]:
            k += 1
        if k > best[0]:
            best = (k, prev)
    return best


def _decide(table: list[dict[str, Any]], others: list[dict[str, Any]], target: str,
            tolerance: float, deployment: Any = None
            ) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The winner, the plain-words explanation, and why each other candidate lost.

    The winner is ranked at the deployment target's largest batch size; where the pick at
    another target batch size differs, the explanation says which and why (measured)."""
    from core.measure import Target

    deployment = Target.coerce(deployment)
    bs = deployment.primary_batch
    win = choose(table, target, tolerance, batch_size=bs,
                 latency_budget_ms=deployment.latency_budget_ms)
    base_row = next(r for r in table if r["name"] == "baseline")
    rest = [r for r in table if r is not win] + list(others)
    losers = [{"name": r["name"], "why_proposed": r.get("why"),
               "why_lost": _why_lost(r, win, target, tolerance, table, bs)} for r in rest]
    text = _winner_text(win, base_row, target, tolerance, bs, min(deployment.batch_sizes))
    picks = pick_per_batch(table, target, tolerance, deployment)
    differs = {k: v for k, v in picks.items() if v["winner"] != win["name"]}
    if differs:
        text += " At another target batch size the pick differs — " + " ".join(
            v["why"] for v in differs.values())
    return win, text, losers


def reselect(report: Mapping[str, Any], target: str, tolerance: float | None = None, *,
             deployment: Any = None) -> dict[str, Any]:
    """The pick for another target from an auto report's measured table (no new runs).

    ``deployment`` (a ``core.measure.Target`` or mapping; default: the report's) chooses the
    batch size ranked and the latency budget; only measured batch sizes can be ranked.
    Returns ``{winner, explanation, losers, row, per_batch}``; same measurements.
    """
    AutoConfig(target=target, tolerance=tolerance if tolerance is not None else 0.01)
    info = report["auto"]
    tol = info["tolerance"] if tolerance is None else tolerance
    table = [{**c, "ok": True} for c in info["candidates"]]
    others = [{"name": f["name"], "error": f["error"]} for f in info.get("failed", [])]
    others += [{"name": s["name"], "skipped": s["reason"]} for s in info.get("skipped", [])]
    from core.measure import Target

    dep = Target.coerce(deployment if deployment is not None else {
        k: v for k, v in (info.get("deployment") or {}).items()
        if k in ("batch_sizes", "threads", "latency_budget_ms")})
    win, text, losers = _decide(table, others, target, tol, dep)
    return {"winner": win["name"], "explanation": text, "losers": losers, "row": win,
            "per_batch": pick_per_batch(table, target, tol, dep)}


@dataclass
class _Search:
    """One auto search: the staging folder, the baseline, and every candidate run so far."""

    tmp: Path
    cb: Callbacks
    base: dict[str, Any]
    step_opts: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    dataset: Any = field(init=False)
    split: str = field(init=False)  # where candidates are selected: "val" (or "test")
    base_model: Any = field(init=False)
    base_val: float = field(init=False)

    def __post_init__(self) -> None:
        from core.artifacts import load_model
        from core.measure import evaluate

        self.dataset = self.base["data"]
        self.split = "val" if len(self.dataset.y_val) else "test"
        start = self.base["start"]
        self.base_model = start if not isinstance(start, (str, Path)) else \
            load_model(self.base["dir"]).model
        self.base_val = evaluate(self.base_model, self.dataset, self.split).accuracy

    @property
    def cands(self) -> Path:
        return self.tmp / "candidates"

    def measured(self) -> list[dict[str, Any]]:
        return [e for e in self.results if "dir" in e]

    def _run_steps(self, cand: Candidate, sub: Callbacks, entry: dict[str, Any]) -> None:
        """Run ``cand``'s steps into ``entry``; steps shared with an earlier candidate (e.g.
        the same prune + fine-tune) are not run twice: start from that one's step folder."""
        from core.artifacts import load_model
        from core.measure import evaluate
        from core.recipes import Recipe, execute_steps

        k, shared = _shared_prefix(cand.steps, self.results)
        start = shared["dirs"][k - 1] if k else self.base["start"]
        recipe = Recipe.from_dict({"name": cand.name, "model": "input",
                                   "data": self.dataset.spec.source, "steps": cand.steps[k:]})
        done = execute_steps(recipe, data=self.dataset, steps_dir=self.cands / cand.name,
                             start=start, callbacks=sub, measure_options=self.step_opts,
                             prefix=f"{cand.name}-")
        entry["parity"] = (shared["parity"][:k] if k else []) + [d["parity"] for d in done]
        entry["dirs"] = (shared["dirs"][:k] if k else []) + [Path(d["run_dir"]) for d in done]
        entry["step_dirs"] = [str(d.relative_to(self.tmp)) for d in entry["dirs"]]
        if k:
            entry["reused_steps_from"] = shared["name"]
        entry["dir"] = entry["dirs"][-1]
        acc = evaluate(load_model(entry["dir"]).model, self.dataset, self.split).accuracy
        entry["val_drop"] = self.base_val - acc

    def run_candidate(self, cand: Candidate, sub: Callbacks) -> dict[str, Any]:
        """Run one candidate (a failure is recorded, not raised) and report it live."""
        entry: dict[str, Any] = {"name": cand.name, "why": cand.why, "steps": cand.steps}
        try:
            self._run_steps(cand, sub, entry)
        except CancelledError:
            raise
        except StudioError as exc:
            entry["error"] = str(exc)
            shutil.rmtree(self.cands / cand.name, ignore_errors=True)
        self.results.append(entry)
        self.cb.metrics({"event": "candidate", "name": cand.name, "why": cand.why,
                         "val_accuracy": None if "val_drop" not in entry else
                         self.base_val - entry["val_drop"], "val_drop": entry.get("val_drop"),
                         "error": entry.get("error")})  # shown live by the Auto tab
        return entry

    def run_all(self, runnable: list[Candidate]) -> None:
        for i, cand in enumerate(runnable):
            lo, hi = 0.12 + 0.5 * i / len(runnable), 0.12 + 0.5 * (i + 1) / len(runnable)
            self.run_candidate(cand, self.cb.sub(lo, hi, f"{cand.name}: "))

    def refine(self, cfg: AutoConfig) -> None:
        """Sparsity search: bisect between the strongest pruning within the tolerance and the
        mildest one beyond it (validation accuracy), for the targets that want it."""
        for r in range(cfg.refine if cfg.target != "accuracy" else 0):
            mid = _next_sparsity(self.results, cfg.tolerance)
            if mid is None:
                break
            ft = next(e["steps"][0]["prune"].get("finetune_epochs") for e in self.results
                      if e["steps"] and "prune" in e["steps"][0])
            tag = f"prune{round(mid * 100)}-ft"
            why = (f"sparsity search round {r + 1}: between the strongest pruning within the "
                   f"tolerance and the mildest beyond it")
            for suffix, tail in (("int8", STATIC_INT8), ("ort", EXPORT)):
                cand = Candidate(f"{tag}-{suffix}", [*prune_steps(mid, ft), tail], why)
                lo = 0.62 + 0.1 * (2 * r + (suffix == "ort")) / (2 * max(cfg.refine, 1))
                self.run_candidate(cand, self.cb.sub(lo, lo + 0.05, f"{cand.name}: "))

    def side_by_side(self, cfg: AutoConfig, mopts: Mapping[str, Any]
                     ) -> tuple[Any, list[dict[str, Any]]]:
        """Re-measure the baseline and every measured candidate in one comparison; the
        comparison and its rows with validation accuracy, drop and balanced score."""
        from core.compare import compare

        base, measured = self.base, self.measured()
        self.cb.progress(0.72, "Measuring every variant side by side")
        eager = {} if isinstance(base["start"], (str, Path)) else \
            {Path(base["dir"]).name: base["start"]}  # time the eager module, not TorchScript
        comp = compare([base["dir"], *(e["dir"] for e in measured)],
                       out_dir=self.tmp / "comparison", data=self.dataset,
                       callbacks=self.cb.sub(0.72, 0.95, "Comparison: "),
                       measure_options=mopts, title=f"Auto-optimizer ({cfg.target})",
                       models=eager)
        named = [("baseline", {"dir": base["dir"], "why": "the input model (torch FP32)"}),
                 *((e["name"], e) for e in measured)]
        return comp, self._table(named, comp.report["rows"])

    def _table(self, named: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
        from core.artifacts import load_model
        from core.measure import evaluate

        table: list[dict[str, Any]] = []
        for (name, e), row in zip(named, rows):
            acc = evaluate(load_model(e["dir"]).model, self.dataset, self.split).accuracy
            run_dir = Path(e["dir"])
            table.append({**row, "name": name, "ok": True, "val_accuracy": acc,
                          "why": e.get("why"), "steps": e.get("steps"),
                          "run_dir": str(run_dir.relative_to(self.tmp))
                          if run_dir.is_relative_to(self.tmp) else str(run_dir)})
        base_row = table[0]
        for r in table:
            r["val_drop"] = base_row["val_accuracy"] - r["val_accuracy"]
            r["balanced_score"] = math.sqrt((r.get("speedup_b64") or 0)
                                            * (r.get("size_reduction") or 0))
        return table


def _winner_recipe(cfg: AutoConfig, model: Any, search: _Search, win: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """The winner's recipe, replayable with `studio run`."""
    base = search.base
    win_steps = next((e["steps"] for e in search.measured() if e["name"] == win["name"]), [])
    recipe: dict[str, Any] = {"name": f"auto-{cfg.target}-{win['name']}",
                              "data": search.dataset.spec.source, "steps": []}
    if base.get("train"):
        t = base["train"]
        recipe.update(model=t["model"], model_kwargs=t["model_kwargs"])
        recipe["steps"].append({"train": {"epochs": t["epochs"], "seed": t["seed"]}})
    else:
        recipe["model"] = str(base["dir"]) if isinstance(model, (str, Path)) else \
            "(a Python module)"
    recipe["steps"] += [*win_steps] + ([] if win_steps[-1:] == [EXPORT] else [EXPORT])
    return recipe


def _copy_winner_files(search: _Search, win: Mapping[str, Any]) -> list[str]:
    """Copy the winner's model files into the run folder; their names."""
    win_dir = Path(search.base["dir"]) if win["name"] == "baseline" else \
        next(e["dir"] for e in search.measured() if e["name"] == win["name"])
    files = []
    for name in MODEL_FILES:
        if (win_dir / name).is_file():
            shutil.copyfile(win_dir / name, search.tmp / name)
            files.append(name)
    return files


def _auto_section(cfg: AutoConfig, search: _Search, proposals: list[Candidate],
                  table: list[dict[str, Any]], deployment: Any, hardware: Mapping[str, Any],
                  decision: tuple[dict[str, Any], str, list[dict[str, Any]]],
                  hotspots: dict[str, Any]) -> dict[str, Any]:
    """The report's ``auto`` section: the pick, why, and every candidate's figures."""
    win, explanation, losers = decision
    return {"target": cfg.target, "tolerance": cfg.tolerance,
            "deployment": deployment.to_dict(),
            "per_batch": pick_per_batch(table, cfg.target, cfg.tolerance, deployment),
            "selection_split": search.split, "winner": win["name"],
            "where_time_goes": hotspots,
            "explanation": explanation, "losers": losers,
            "hardware": {k: hardware.get(k) for k in ("cpu", "isa", "cores", "memory_gb",
                                                      "cuda")},
            "candidates": [_row_view(r) for r in table],
            "failed": [{"name": e["name"], "error": e["error"]}
                       for e in search.results if "error" in e],
            "skipped": [{"name": c.name, "reason": c.skipped} for c in proposals if c.skipped],
            "comparison": "comparison/report.html"}


def _explain(cfg: AutoConfig, search: _Search, proposals: list[Candidate],
             table: list[dict[str, Any]], deployment: Any
             ) -> tuple[tuple[dict[str, Any], str, list[dict[str, Any]]], dict[str, Any]]:
    """The decision (winner, explanation with where the baseline spends its time, losers)
    and the layer hotspots."""
    failed = [{"name": e["name"], "error": e["error"], "why": e["why"]}
              for e in search.results if "error" in e]
    skipped = [{"name": c.name, "skipped": c.skipped, "why": c.why}
               for c in proposals if c.skipped]
    win, explanation, losers = _decide(table, failed + skipped, cfg.target, cfg.tolerance,
                                       deployment)
    base_model = search.base_model
    hotspots = where_time_goes(base_model if hasattr(base_model, "named_modules")
                               else search.base["dir"], search.dataset)
    if hotspots["layers"]:
        explanation += " " + hotspots["text"]
    return (win, explanation, losers), hotspots


def auto(
    model: Any,
    data: Any = None,
    config: AutoConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Find the best variant of ``model`` for ``config.target`` within ``config.tolerance``.

    ``model`` is a family name (trained first), a run folder, a model file or an nn.Module.
    Candidates are proposed from the hardware (ISA, CUDA) and run through the area verbs
    (with parity checks between steps); all of them and the baseline are then re-measured
    side by side in one run (``core.compare``), and the winner is picked on the Pareto front
    among those whose validation accuracy dropped by at most the tolerance. ``out_dir`` gets
    the winner's model files, report.json (with the explanation), recipe.yaml, and
    ``candidates/`` and ``comparison/`` (HTML/MD/CSV reports).
    """
    import yaml

    from core.artifacts import build_report, file_entry, staging, write_report
    from core.measure import Measurement, environment_manifest
    from core.measure._target import TARGET_KEYS, resolve_target
    from core.runs import RunResult

    cfg = resolve_config(config, overrides, cls=AutoConfig)
    cb = Callbacks.ensure(callbacks)
    mopts = dict(measure_options or {})
    step_opts = {**mopts, "budget_s": min(0.05, mopts.get("budget_s", 0.05)), "memory": False}
    hardware = environment_manifest(threads=mopts.get("threads", 1))
    out_dir = Path(out_dir)
    with staging(out_dir, overwrite=overwrite, inputs=[model]) as tmp:
        cb.progress(0.0, "Baseline")
        base = _baseline(model, data, cfg, tmp / "candidates" / "baseline",
                         cb.sub(0.0, 0.12, "Baseline: "), step_opts)
        proposals = propose(hardware, family=base["family"],
                            finetune_epochs=cfg.finetune_epochs, only=cfg.candidates)
        search = _Search(tmp, cb, base, step_opts)
        search.run_all([c for c in proposals if not c.skipped])
        search.refine(cfg)
        comp, table = search.side_by_side(cfg, mopts)
        deployment = resolve_target(**{k: mopts.get(k) for k in TARGET_KEYS})
        decision, hotspots = _explain(cfg, search, proposals, table, deployment)
        win = decision[0]
        recipe_yaml = yaml.safe_dump(_winner_recipe(cfg, model, search, win), sort_keys=False)
        (tmp / "recipe.yaml").write_text(recipe_yaml)
        files = _copy_winner_files(search, win)
        variants = comp.report["variants"]
        base_m = Measurement.from_dict(variants[table[0]["variant"]]["measurement"])
        win_m = Measurement.from_dict(variants[win["variant"]]["measurement"])
        artifacts = [file_entry(tmp / f, tmp) for f in files + ["recipe.yaml"]]
        report = build_report(
            operation="auto", method=win["name"], config=cfg.to_dict(), seed=cfg.seed,
            baseline=base_m, result=win_m, artifacts=artifacts,
            environment=comp.report["environment"], warnings=comp.report["warnings"],
            parent=parent, extra={
                "auto": _auto_section(cfg, search, proposals, table, deployment, hardware,
                                      decision, hotspots),
                "recipe_yaml": recipe_yaml,
            })
        report["data"] = search.dataset.spec.to_dict()
        write_report(tmp, report)
    cb.progress(1.0, "Done")
    return RunResult(out_dir, report)


def where_time_goes(model: Any, data: Any, threshold: float = 0.10) -> dict[str, Any]:
    """The baseline's layers above ``threshold`` of its forward time (core.profiling, batch 1):
    where pruning and quantization can pay. Empty, with the reason, where it cannot profile."""
    from core.profiling import profile

    try:
        prof = profile(model, data, runs=20, warmup=3, budget_s=0.1)
    except Exception as exc:  # an explanation only: never a reason to fail the search
        return {"layers": [], "text": "", "error": f"{type(exc).__name__}: {exc}"}
    hot = prof.find_bottlenecks(threshold)
    layers = [{"layer": lay.name, "kind": lay.kind, "share": lay.share,
               "time_ms": lay.time_ms} for lay in hot]
    named = ", ".join(f"{lay.name} ({lay.kind}) {100 * lay.share:.0f} %" for lay in hot[:4])
    text = (f"Where the baseline spends its time (layer profile, batch 1): {named}; "
            "these layers are where pruning and INT8 can pay.") if hot else ""
    return {"layers": layers, "text": text, "threshold": threshold}


def _row_view(r: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("name", "variant", "run_dir", "why", "size_bytes", "p50_b1", "p50_b64",
            "speedup_b1", "speedup_b64", "size_reduction", "accuracy", "accuracy_delta",
            "val_accuracy", "val_drop", "pareto", "balanced_score", "steps", "precision")
    per_batch = ("p50_b", "p95_b", "speedup_b", "gmacs_b", "peak_share_b")
    return {**{k: r.get(k) for k in keys},
            **{k: v for k, v in r.items() if k.startswith(per_batch)}}
