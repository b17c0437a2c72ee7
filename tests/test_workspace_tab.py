"""Workspaces (a private key kept in the browser) and the current model, without a browser:
run folders are written by hand, so these tests take milliseconds."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.context import WORKSPACE_KEY, NotFoundError, StudioContext, new_workspace_key


def _browser(session_hash: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=session_hash)


def _run(ctx: StudioContext, request, run_id: str, **report) -> Path:
    """A finished run folder with the given report fields (what the engine would write)."""
    folder = ctx.session_dir(request) / run_id
    folder.mkdir()
    report.setdefault("result", {"accuracy": 0.95})
    (folder / "report.json").write_text(json.dumps(report))
    return folder


TRAIN = {"operation": "train", "config": {"model": "cnn"}, "data": {"source": "digits"}}


def test_a_reloaded_page_finds_its_workspace_and_another_browser_does_not(tmp_path):
    ctx = StudioContext(tmp_path)
    first = _browser("tab-before-reload")
    key = ctx.bind_workspace(first, None)
    assert WORKSPACE_KEY.match(key)
    _run(ctx, first, "train-aaa", **TRAIN)

    reloaded = _browser("tab-after-reload")  # F5: a new Gradio session, same stored key
    assert ctx.bind_workspace(reloaded, key) == key
    assert [p.name for p in ctx.runs(reloaded)] == ["train-aaa"]

    other = _browser("another-browser")
    other_key = ctx.bind_workspace(other, None)
    assert other_key != key and ctx.runs(other) == []
    with pytest.raises(NotFoundError):
        ctx.find_run(other, "train-aaa")


def test_the_binding_survives_a_server_restart_and_keys_are_validated(tmp_path):
    ctx = StudioContext(tmp_path)
    page = _browser("page")
    key = ctx.bind_workspace(page, new_workspace_key())
    folder = ctx.session_id(page)
    assert key not in folder and "page" not in folder  # the folder id reveals neither

    restarted = StudioContext(tmp_path)  # same root, a fresh process
    assert restarted.session_id(page) == folder
    # A malformed stored value (or someone else's guess) is replaced by a fresh key.
    for bad in ("", "ws1-short", "x" * 47, {"key": key}, key + "A"):
        fresh = restarted.bind_workspace(_browser("p2"), bad)
        assert fresh != key and WORKSPACE_KEY.match(fresh)


def test_an_unbound_session_keeps_its_own_folder(tmp_path):
    ctx = StudioContext(tmp_path)
    assert ctx.session_id(_browser("abc")) == ctx.session_id("abc")
    ctx.bind_workspace(_browser("abc"), None)
    assert ctx.session_id(_browser("abc")) != ctx.session_id("abc")


def test_bindings_expire_with_the_ttl(tmp_path):
    import os
    import time

    ctx = StudioContext(tmp_path, session_ttl_hours=1)
    page = _browser("old-page")
    ctx.bind_workspace(page, None)
    old = time.time() - 3 * 3600
    for path in (tmp_path / "bindings").iterdir():
        os.utime(path, (old, old))
    for path in ctx.session_dir(page).rglob("*"):
        os.utime(path, (old, old))
    ctx.cleanup_sessions(now=time.time())
    assert not list((tmp_path / "bindings").iterdir())
    assert not StudioContext(tmp_path).runs(page)


def test_every_picker_defaults_to_the_current_model_not_the_newest(tmp_path):
    from studio.widgets import variant_update

    ctx = StudioContext(tmp_path)
    me = "me"
    _run(ctx, me, "train-base", **TRAIN)
    _run(ctx, me, "quantize-new", operation="quantize", method="ort-static-int8",
         config={"calibration": "entropy"}, parent="train-base")
    update = variant_update(ctx, me)
    assert update["value"] == "train-base"
    labels = dict((v, label) for label, v in update["choices"])
    assert labels["train-base"].startswith("CNN on digits")
    assert labels["quantize-new"].startswith("↳ INT8 (static, entropy)")

    ctx.set_current(me, "quantize-new")  # a pick in the bar
    assert variant_update(ctx, me)["value"] == "quantize-new"
    assert ctx.ensure_baseline(me) == ctx.session_dir(me) / "quantize-new"
    with pytest.raises(NotFoundError):
        ctx.set_current(me, "../elsewhere")


@pytest.mark.parametrize("report, name", [
    (TRAIN, "CNN on digits"),
    ({"operation": "train", "config": {"model": "mlp"},
      "data": {"source": "/srv/studio/sessions/x/uploads/iris.csv"}}, "MLP on iris"),
    ({"operation": "quantize", "method": "ort-dynamic-int8", "config": {}},
     "INT8 (dynamic)"),
    ({"operation": "quantize", "method": "ort-fp16", "config": {}}, "FP16"),
    ({"operation": "prune", "method": "structured-l2", "config": {"sparsity": 0.5}},
     "Pruned 50 % (structured-l2)"),
    ({"operation": "scale", "method": "fedavg", "config": {}},
     "Federated MLP (synthetic data)"),
])
def test_friendly_names_say_what_a_variant_is_and_never_show_a_path(report, name):
    from studio.names import friendly_name

    assert friendly_name(report) == name


def test_a_renamed_variant_shows_its_name_in_every_picker_and_only_in_its_workspace(tmp_path):
    from core.errors import StudioError
    from studio.widgets import variant_update

    ctx = StudioContext(tmp_path)
    me, other = "me", "someone-else"
    _run(ctx, me, "train-base", **TRAIN)
    _run(ctx, me, "quantize-new", operation="quantize", method="ort-static-int8",
         config={"calibration": "entropy"}, parent="train-base")
    assert ctx.rename(me, "quantize-new", "  Phone\tbuild\x07v2 ") == "Phone build v2"
    labels = dict((v, label) for label, v in variant_update(ctx, me)["choices"])
    assert labels["quantize-new"].startswith("↳ Phone build v2")
    assert labels["train-base"].startswith("CNN on digits")
    report = json.loads((ctx.find_run(me, "quantize-new") / "report.json").read_text())
    assert ctx.display_name(me, ctx.find_run(me, "quantize-new"), report) == "Phone build v2"

    ctx.rename(me, "quantize-new", "")  # empty: the derived name again
    labels = dict((v, label) for label, v in variant_update(ctx, me)["choices"])
    assert labels["quantize-new"].startswith("↳ INT8 (static, entropy)")
    with pytest.raises(StudioError, match="name"):
        ctx.rename(me, "train-base", "x" * 61)
    with pytest.raises(NotFoundError):
        ctx.rename(other, "train-base", "mine now")


@pytest.mark.parametrize("files, kind", [
    (("model.json", "model.safetensors", "model.onnx"), "builtin"),
    (("model.json", "model.sparse.npz"), "builtin"),
    (("model.json", "model.onnx"), "onnx"),
    (("model.pt",), "torchscript"),
    (("model.pt2",), "export"),
])
def test_pickers_offer_only_the_methods_that_apply_to_the_model(tmp_path, files, kind):
    from core.pruning import STRUCTURED
    from core.quantization import method_kinds
    from core.registry import list_methods
    from studio.widgets import applicable, run_kind

    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert run_kind(tmp_path) == kind
    quant = applicable("quantization", kind)
    fits = [m for m in list_methods("quantization") if kind in method_kinds(m)]
    # a .pt2 program fits none: all stay listed and the run says to export it to ONNX
    assert quant == (fits or list(list_methods("quantization")))
    if kind == "torchscript":  # the torch-* methods need an eager (or converted ONNX) module
        assert not any(m.startswith("torch") for m in quant)
    prune = applicable("pruning", kind)
    assert prune and (set(prune) & set(STRUCTURED)) == (
        set() if kind in ("torchscript", "export") else set(STRUCTURED))
