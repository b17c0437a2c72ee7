"""Run a recipe step by step through the area verbs, with a parity check between steps."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.callbacks import Callbacks
from core.errors import StudioError, UnsupportedModelError
from core.recipes._recipe import Recipe, Step, step_config

__all__ = ["ParityError", "check_parity", "execute_steps", "recipe_from_lineage", "run_recipe"]

MODEL_FILES = ("model.json", "model.safetensors", "model.sparse.npz", "model.onnx",
               "model.onnx.data", "model.pt",
               "model.pt2")


class ParityError(StudioError):
    """A step's artifacts disagree (e.g. ONNX Runtime vs torch): the recipe stops."""


def _torch_form(run_dir: Path) -> Any:
    """The run's torch form (built-in weights, TorchScript or torch.export), or None."""
    from core.artifacts import load_model

    if (run_dir / "model.json").is_file() and any(
            (run_dir / n).is_file() for n in ("model.safetensors", "model.sparse.npz")):
        return load_model(run_dir).model
    for name in ("model.pt", "model.pt2"):
        if (run_dir / name).is_file():
            return load_model(run_dir / name).model
    return None


def check_parity(run_dir: str | Path, data: Any, *, parent: Any = None, atol: float = 1e-3,
                 min_agreement: float = 0.95) -> dict[str, Any]:
    """Compare a step's outputs: its ONNX file vs its torch form when it has both; else
    (a quantized artifact, given ``parent``) its top-1 agreement with the parent model.

    Returns ``{kind, ok, ...figures}``; the limit for logits is ``atol · max(1, max|logit|)``.
    """
    from core.artifacts import load_model
    from core.measure import ort_session, predict_logits

    run_dir = Path(run_dir)
    X = data.X_test[:256]
    onnx = run_dir / "model.onnx"
    torch_model = _torch_form(run_dir)
    if torch_model is not None and onnx.is_file():
        ref = predict_logits(torch_model, X)
        got = predict_logits(ort_session(onnx), X)
        diff = float(np.abs(ref - got).max())
        limit = atol * max(1.0, float(np.abs(ref).max()))
        return {"kind": "onnxruntime-vs-torch", "max_abs_diff": diff, "limit": limit,
                "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
                "ok": diff <= limit}
    if parent is not None:
        loaded = load_model(run_dir)
        ref_model = load_model(parent).model if isinstance(parent, (str, Path)) else parent
        ref = predict_logits(ref_model, X)
        got = predict_logits(loaded.model, X)
        agree = float((ref.argmax(1) == got.argmax(1)).mean())
        return {"kind": f"{loaded.kind}-artifact-vs-parent", "top1_agreement": agree,
                "max_abs_diff": float(np.abs(ref - got).max()), "limit": min_agreement,
                "ok": agree >= min_agreement}
    return {"kind": "none", "ok": True, "note": "the step has one form only"}


def _finetune(src: Any, data: Any, cfg: Any, out_dir: Path, cb: Callbacks,
              mopts: Mapping[str, Any] | None) -> Any:
    """Train a built-in model further (same family and widths) and write a measured run."""
    from core.artifacts import save_model, staging, write_run
    from core.models import is_builtin
    from core.runs import RunResult, open_variant
    from core.training import train

    if isinstance(src, (str, Path)):
        variant = open_variant(src, data=data)
        base, files, parent = variant.model, variant.files(), variant.run_id
    else:
        base, files, parent = src, [], None
    if not is_builtin(base):
        raise UnsupportedModelError("The 'finetune' step needs a built-in torch model (a run "
                                    "folder with model.safetensors), not an ONNX or quantized "
                                    "artifact; put it before 'quantize'.")
    model = copy.deepcopy(base)
    with staging(out_dir) as tmp:
        result = train(model, data, cfg, callbacks=cb.sub(0.0, 0.8))
        saved = save_model(model, tmp, data=data)
        report = write_run(
            tmp, operation="finetune", method=None, config=cfg.to_dict(), data=data,
            result_model=model, result_files=[tmp / "model.safetensors"], baseline_model=base,
            baseline_files=files, seed=cfg.seed, parent=parent, label="The fine-tuned model",
            extra={"training": result.to_dict(),
                   "onnx_parity_max_abs_diff": saved["onnx_parity"]},
            measure_options=mopts, callbacks=cb.sub(0.8, 1.0))
    return RunResult(Path(out_dir), report)


def _export(src: Any, data: Any, out_dir: Path, cb: Callbacks,
            mopts: Mapping[str, Any] | None) -> Any:
    """The deployable form: the previous step's ``model.onnx`` served by ONNX Runtime.

    Measured against the previous step's own model (e.g. torch FP32 eager), so the report
    says what serving the ONNX file gains; a torch module without an ONNX file is exported.
    """
    import torch

    from core.artifacts import export_onnx, load_model, staging, write_run
    from core.artifacts._onnx import onnx_files
    from core.measure import ort_session
    from core.runs import RunResult

    cb.progress(0.0, "Exporting")
    parent_id, base_files = None, []
    with staging(out_dir) as tmp:
        if isinstance(src, (str, Path)):
            src = Path(src)
            parent_id = src.name
            onnx = src / "model.onnx" if src.is_dir() else src
            base = load_model(src)
            base_model, base_files = (_torch_form(src) if src.is_dir() else None), base.files()
            base_model = base_model if base_model is not None else base.model
            if onnx.suffix == ".onnx" and onnx.is_file():
                from core.artifacts._onnx import copy_onnx

                copy_onnx(onnx, tmp / "model.onnx")  # with its external data, if any
            else:
                export_onnx(base_model, tmp / "model.onnx",
                            torch.from_numpy(data.X_test[:1]), check_inputs=data.X_test[:64])
            if src.is_dir() and (src / "model.json").is_file():
                shutil.copyfile(src / "model.json", tmp / "model.json")
        else:
            base_model = src
            export_onnx(src, tmp / "model.onnx", torch.from_numpy(data.X_test[:1]),
                        check_inputs=data.X_test[:64])
        threads = int((mopts or {}).get("threads", 1))
        report = write_run(
            tmp, operation="export", method="onnxruntime", config={}, data=data,
            result_model=ort_session(tmp / "model.onnx", threads=threads),
            result_files=onnx_files(tmp / "model.onnx"), baseline_model=base_model,
            baseline_files=base_files, parent=parent_id, label="The ONNX Runtime model",
            measure_options=mopts, callbacks=cb.sub(0.1, 1.0))
    return RunResult(Path(out_dir), report)


def _run_step(step: Step, index: int, source: Any, recipe: Recipe, data: Any, out_dir: Path,
              cb: Callbacks, mopts: Mapping[str, Any] | None) -> Any:
    cfg = step_config(step)
    if step.kind == "train":
        from core.runs import train_baseline

        return train_baseline(recipe.model, data, cfg, out_dir=out_dir,
                              model_kwargs=recipe.model_kwargs or None, callbacks=cb,
                              measure_options=mopts)
    if step.kind == "finetune":
        return _finetune(source, data, cfg, out_dir, cb, mopts)
    if step.kind == "prune":
        from core.pruning import prune

        return prune(source, data, cfg, out_dir=out_dir, callbacks=cb, measure_options=mopts)
    if step.kind == "distill":
        from core.distillation import distill

        return distill(source, data, cfg, out_dir=out_dir, callbacks=cb, measure_options=mopts)
    if step.kind == "factorize":
        from core.lowrank import factorize

        return factorize(source, data, cfg, out_dir=out_dir, callbacks=cb,
                         measure_options=mopts)
    if step.kind == "fuse":
        from core.fusion import fuse

        return fuse(source, data, cfg, out_dir=out_dir, callbacks=cb, measure_options=mopts)
    if step.kind == "quantize":
        from core.quantization import quantize

        return quantize(source, data, cfg, out_dir=out_dir, callbacks=cb,
                        measure_options=mopts)
    if step.kind == "export":
        return _export(source, data, out_dir, cb, mopts)
    raise StudioError(f"Step {index + 1} '{step.kind}' cannot run here.")


def execute_steps(recipe: Recipe, *, data: Any, steps_dir: str | Path, start: Any = None,
                  callbacks: Callbacks | None = None,
                  measure_options: Mapping[str, Any] | None = None,
                  prefix: str = "") -> list[dict[str, Any]]:
    """Run the steps in order into ``steps_dir/<prefix>NN-kind``; stop at a failed parity check.

    ``start`` is the input of the first step when it is not 'train' (a run folder, a model
    file or an nn.Module). Returns one entry per step: ``{step, run_dir, parity}``.
    """
    cb = Callbacks.ensure(callbacks)
    steps_dir = Path(steps_dir)
    steps_dir.mkdir(parents=True, exist_ok=True)
    source: Any = start
    done: list[dict[str, Any]] = []
    runnable = list(recipe.steps)
    n = max(len(runnable), 1)
    for i, step in enumerate(runnable):
        label = f"Step {i + 1}/{len(runnable)} ({step.kind}): "
        out = steps_dir / f"{prefix}{i + 1:02d}-{step.kind}"
        sub = cb.sub(i / n, (i + 0.9) / n, label)
        if source is None and step.kind != "train":
            raise StudioError("The recipe needs a model to start from: a 'train' first step, "
                              "or a run folder / model file as 'model'.")
        _run_step(step, i, source, recipe, data, out, sub, measure_options)
        cb.progress((i + 0.92) / n, label + "parity check")
        # Steps that keep the function (quantize, export) are checked against their input;
        # the others change the outputs on purpose and are checked ONNX vs torch.
        parent = source if step.kind in ("quantize", "export") else None
        parity = check_parity(out, data, parent=parent, atol=recipe.parity_atol,
                              min_agreement=recipe.parity_min_agreement)
        done.append({"step": step.to_dict(), "kind": step.kind, "run_dir": str(out),
                     "run_id": out.name, "parity": parity})
        if not parity["ok"]:
            what = (f"max |Δ| = {parity['max_abs_diff']:.3g} > {parity['limit']:.3g} allowed"
                    if parity["kind"] == "onnxruntime-vs-torch" else
                    f"top-1 agreement with the previous step {parity['top1_agreement']:.3f} < "
                    f"{parity['limit']:.3f} required")
            nxt = runnable[i + 1].kind if i + 1 < len(runnable) else None
            raise ParityError(
                f"Parity check failed after step {i + 1} ({step.kind}): "
                f"{parity['kind'].replace('-', ' ')} outputs diverge ({what}). The recipe "
                f"stopped{f' before step {i + 2} ({nxt})' if nxt else ''}; nothing was kept. "
                "Loosen 'parity' in the recipe only if this difference is expected.")
        source = out
    return done


def run_recipe(recipe: Recipe, *, out_dir: str | Path, model: Any = None, data: Any = None,
               callbacks: Callbacks | None = None,
               measure_options: Mapping[str, Any] | None = None,
               overwrite: bool = False) -> Any:
    """Run a recipe into ``out_dir`` (steps under ``steps/``; the final model at the top).

    The report measures the recipe's input (or its trained model) against the final
    variant side by side; the same recipe gives the same variants from the UI, CLI or API.
    """
    from core.artifacts import load_model, make_bundle, staging, write_run
    from core.data import Dataset, load_dataset
    from core.runs import RunResult

    cb = Callbacks.ensure(callbacks)
    dataset = data if isinstance(data, Dataset) else load_dataset(data or recipe.data)
    start = model if model is not None else (None if recipe.trains else recipe.model)
    out_dir = Path(out_dir)
    with staging(out_dir, overwrite=overwrite, inputs=[model]) as tmp:
        steps = execute_steps(recipe, data=dataset, steps_dir=tmp / "steps", start=start,
                              callbacks=cb.sub(0.0, 0.9), measure_options=measure_options)
        final = Path(steps[-1]["run_dir"])
        for name in MODEL_FILES:
            if (final / name).is_file():
                shutil.copyfile(final / name, tmp / name)
        result = load_model(tmp)
        if recipe.trains:
            base = load_model(steps[0]["run_dir"])
            base_model, base_files = base.model, base.files()
        elif isinstance(start, (str, Path)):
            base = load_model(start)
            base_model, base_files = base.model, base.files()
        else:
            base_model, base_files = start, []
        cb.progress(0.92, "Measuring the recipe's input and result side by side")
        for s in steps:  # paths relative to the final folder
            s["run_dir"] = str(Path(s["run_dir"]).relative_to(tmp))
        report = write_run(
            tmp, operation="recipe", method=recipe.name, config=recipe.to_dict(), data=dataset,
            result_model=result.model, result_files=result.files(), baseline_model=base_model,
            baseline_files=base_files, label=f"The recipe '{recipe.name}' result",
            extra={"recipe": {"steps": steps, "final_step": steps[-1]["run_id"]}},
            measure_options=measure_options, callbacks=cb.sub(0.92, 0.99))
        if recipe.steps[-1].kind == "export":
            make_bundle(tmp, tmp / "bundle.zip")
    cb.progress(1.0, "Done")
    return RunResult(out_dir, report)


_OP_TO_STEP = {"train": "train", "prune": "prune", "finetune": "finetune",
               "distill": "distill", "quantize": "quantize", "export": "export",
               "factorize": "factorize", "fuse": "fuse"}


def recipe_from_lineage(run_dir: str | Path, *, search: Any = (), name: str | None = None
                        ) -> Recipe:
    """'Save as recipe': the steps that made a variant, read from its lineage."""
    from core.artifacts import read_report
    from core.compare import lineage

    report = read_report(run_dir)
    if report.get("operation") in ("recipe", "auto") and report.get("recipe_yaml"):
        return Recipe.from_yaml(report["recipe_yaml"])
    if report.get("operation") == "recipe":
        return Recipe.from_dict(report["config"])
    chain = lineage(run_dir, search=search)
    if not chain[0]["found"]:
        raise StudioError(f"The lineage of '{Path(run_dir).name}' starts at "
                          f"'{chain[0]['run_id']}', which is not here; it cannot be replayed.")
    root = chain[0]
    steps: list[dict[str, Any]] = []
    model, kwargs = "cnn", {}
    if root["operation"] == "train":
        cfg = dict(root["config"])
        model = cfg.pop("model", "cnn")
        kwargs = cfg.pop("model_kwargs", {}) or {}
        steps.append({"train": cfg})
    elif root["operation"] == "benchmark":
        model = str(root["config"].get("model"))
    else:
        raise StudioError(f"The lineage of '{Path(run_dir).name}' starts with a "
                          f"'{root['operation']}' run; only train/benchmark roots replay.")
    for node in chain[1:]:
        op = node["operation"]
        if op not in _OP_TO_STEP:
            raise StudioError(f"'{node['run_id']}' ({op}) is not a recipe step.")
        cfg = dict(node["config"])
        if op == "quantize":
            cfg = {"method": node["method"], **cfg}
        if op == "export":
            cfg = {}
        if op == "distill":
            cfg = {k: v for k, v in cfg.items() if k not in ("student", "teachers")
                   or v not in (None, [], ())}
        steps.append({_OP_TO_STEP[op]: cfg})
    data = (root.get("data") or {}).get("source", "digits")
    return Recipe.from_dict({"name": name or f"from-{Path(run_dir).name}", "model": model,
                             "data": data, "model_kwargs": kwargs, "steps": steps})
