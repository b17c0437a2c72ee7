"""Security round 4, against the served studio on a shared Space: YAML a user types, request
sizes, cross-session reads through Gradio's file routes, and markup in what the studio
renders. Each test is one hole that was open, or one attack that must keep failing; what was
already covered lives in test_security_*.py, test_adversarial.py and test_bad_input_sweep.py."""

from __future__ import annotations

import pytest

from tests.helpers.rest import rest_client, session, wait_job


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec4")
    with rest_client(root, per_owner=4) as client:
        yield client, root


def _laughs(levels: int = 8) -> list[str]:
    """YAML lines of a "billion laughs": level i lists level i-1 ten times (10^levels values
    from ~0.5 KB of text)."""
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return lines


# --- YAML a user sends ------------------------------------------------------------------------


def test_a_yaml_alias_bomb_in_a_tune_space_is_refused_at_submit(server):
    """The space's 'low' is 10^8 numbers by aliases: it was parsed, then printed whole in the
    error (17 s and 0.8 GB in the server process; a ninth level is 10x that)."""
    client, _ = server
    space = "lr:\n  type: float\n  high: 1\n  low:\n" + "\n".join("    " + x for x in _laughs())
    r = client.post("/api/jobs", headers=session(client),
                    json={"kind": "tune", "config": {"config": {"space": space}}})
    assert r.status_code == 422, r.text
    assert "'space' parameter must be valid YAML (its aliases (*name) expand it past" \
        in r.json()["detail"]
    assert len(r.text) < 2000


@pytest.mark.parametrize("text, why", [
    ("\n".join(_laughs()) + "\nsteps: [quantize]\nname: *a7\n", "expand it past 1,000,000"),
    ("steps: &s [quantize, *s]\n", "refers to the value that contains it"),
    ("name: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply to read"),
])
def test_a_recipe_bomb_is_one_clear_error(text, why):
    """The Auto tab's recipe box: an alias bomb, an alias inside itself, deep nesting (that
    was a bare RecursionError)."""
    from core.errors import InvalidParameterError
    from core.recipes import Recipe

    with pytest.raises(InvalidParameterError, match="'recipe' parameter must be valid YAML") \
            as err:
        Recipe.from_yaml(text, allow_paths=False)
    assert why in str(err.value)


def test_anchors_and_merge_keys_within_reason_still_load():
    from core.config import load_yaml

    assert load_yaml("base: &b {n: 2, m: x}\nother: {<<: *b, n: 3}\nl: [*b, *b]\n") == {
        "base": {"n": 2, "m": "x"}, "other": {"n": 3, "m": "x"},
        "l": [{"n": 2, "m": "x"}, {"n": 2, "m": "x"}]}


# --- request sizes ----------------------------------------------------------------------------


def test_a_job_body_over_the_request_limit_is_refused_before_it_is_parsed(server, monkeypatch):
    """POST /api/jobs had no size limit: an 80 MB JSON config was parsed whole (14.6 s, 1.35 GB
    peak in the test process) and answered with a 100 MB error quoting it."""
    client, _ = server
    monkeypatch.setenv("STUDIO_MAX_REQUEST_KB", "64")
    me = {**session(client), "content-type": "application/json"}
    body = '{"kind": "train", "config": {"model": "cnn", "x": [' + "1.5, " * 20_000 + "1]}}"
    r = client.post("/api/jobs", headers=me, content=body)
    assert r.status_code == 413
    assert r.json()["detail"].startswith("The request body is over the limit "
                                         "STUDIO_MAX_REQUEST_KB=64 KB")

    def streamed():  # no Content-Length: cut off once past the limit
        for _ in range(100):
            yield b" " * 1024

    assert client.post("/api/jobs", headers=me, content=streamed()).status_code == 413
    ok = client.post("/api/jobs", headers=me, content='{"kind": "train", "config": {"x": 1}}')
    assert ok.status_code == 422 and "'x' parameter" in ok.json()["detail"]


def _tiny_studio(root):
    """The served app (REST + Gradio, as on a Space) around a one-textbox UI."""
    import gradio as gr

    from studio.api import create_app
    from studio.context import StudioContext

    with gr.Blocks() as demo:
        text, out = gr.Textbox(), gr.Textbox()
        text.submit(lambda s: s[::-1], text, out, api_name="reverse")
    ctx = StudioContext(root)
    return ctx, create_app(ctx, demo=demo)


def test_a_ui_event_body_is_limited_and_uploads_are_not(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("STUDIO_MAX_REQUEST_KB", "64")
    _, app = _tiny_studio(tmp_path)
    join = {"fn_index": 0, "session_hash": "s4", "event_data": None, "trigger_id": None}
    with TestClient(app) as client:
        big = client.post("/gradio_api/queue/join", json={**join, "data": ["y" * 100_000]})
        assert big.status_code == 413 and "STUDIO_MAX_REQUEST_KB" in big.json()["detail"]
        assert client.post("/gradio_api/queue/join", json={**join, "data": ["hi"]}) \
            .status_code == 200
        up = client.post("/gradio_api/upload", files={"files": ("big.csv", b"1\n" * 100_000)})
        assert up.status_code == 200 and up.json()[0].endswith("big.csv")


# --- files a UI event receives ----------------------------------------------------------------


def _run_event(client, fn_index: int, data: list, session_hash: str) -> dict:
    """Queue one event by hand (as any client may) and return its completion message."""
    import json

    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash,
            "event_data": None, "trigger_id": None}
    assert client.post("/gradio_api/queue/join", json=body).status_code == 200
    with client.stream("GET", "/gradio_api/queue/data",
                       params={"session_hash": session_hash}) as events:
        for line in events.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("no completion")


def test_a_ui_event_takes_only_files_a_user_uploaded_never_a_server_path(tmp_path):
    """Mounted beside the REST API (as served), Gradio skipped its 'was it uploaded?' check
    (only a launched app makes it): a client that named a server path in a File input's
    payload got that file: here the root's token key. In the studio every File slot was open
    so, for files of its types (.csv/.npz data, .onnx models, .yaml recipes) and for any file
    in Model & Data's external-data slot, which has no file_types."""
    import gradio as gr
    from fastapi.testclient import TestClient

    from studio.api import create_app
    from studio.context import StudioContext

    seen = []
    with gr.Blocks() as demo:
        files, out = gr.File(file_count="multiple"), gr.Textbox()
        files.upload(lambda ps: seen.append(ps) or "read", files, out, api_name="read")
    ctx = StudioContext(tmp_path / "root")
    app = create_app(ctx, demo=demo)
    secret = ctx.root / ".api-token-key"
    with TestClient(app) as client:
        named = [{"path": str(secret), "meta": {"_type": "gradio.FileData"},
                  "orig_name": "weights.bin"}]
        refused = _run_event(client, 0, [named], "evil4")
        assert refused["success"] is False and seen == []
        assert "it was not uploaded by a user" in refused["output"]["error"]
        uploaded = client.post("/gradio_api/upload",
                               files={"files": ("mine.csv", b"a,label\n1,0\n")}).json()[0]
        mine = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": "mine.csv"}]
        assert _run_event(client, 0, [mine], "user4")["success"] is True
        assert [open(p).read() for p in seen[0]] == ["a,label\n1,0\n"]


# --- absurd values ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, config", [
    ("train", {"model": "mlp", "epochs": 1, "seed": 2**70}),
    ("tune", {"config": {"seed": 2**40}}),
    ("recipe", {"recipe": {"steps": [{"train": {"epochs": 1, "seed": 2**33}}]}}),
])
def test_a_seed_too_large_for_the_generators_is_refused_at_submit(server, kind, config):
    """A train job with seed 2**70 was queued and failed in its child with 'Internal error:
    RuntimeError: ValueError: Overflow when unpacking long long' (torch.manual_seed)."""
    client, _ = server
    r = client.post("/api/jobs", headers=session(client), json={"kind": kind, "config": config})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("The 'seed' parameter must be an integer in "
                                         "[0, 4294967295].")


def test_the_largest_seed_trains():
    from core.config import SEED_MAX
    from core.data import load_dataset
    from core.models import build_model
    from core.training import TrainConfig, train

    data = load_dataset("wine")
    model = build_model("mlp", input_shape=list(data.input_shape), num_classes=data.num_classes)
    result = train(model, data, TrainConfig(epochs=1, seed=SEED_MAX))
    assert result.history and result.config["seed"] == SEED_MAX == 2**32 - 1


# --- markup in what the studio writes ---------------------------------------------------------

HOSTILE = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'


def test_the_html_comparison_report_escapes_every_text_it_shows():
    """report.html lies in a session folder, which the UI serves inline as text/html on the
    studio's own origin: any markup a user could place in it would run there. Names,
    methods, warnings, title, data source and environment all carry the hostile text."""
    from core.compare import to_html

    def row(name, base):
        return {"variant": name + HOSTILE, "operation": "train" + HOSTILE,
                "method": HOSTILE, "parent": None if base else "a" + HOSTILE,
                "size_bytes": 1000 if base else 500, "params": 10, "p50_b1": 1.0,
                "p50_b64": 2.0, "accuracy": 0.9, "baseline": base, "pareto": True}

    report = {"title": HOSTILE, "created_at": HOSTILE, "data": {"source": HOSTILE},
              "baseline_id": HOSTILE, "environment": {"cpu": HOSTILE, "isa": [HOSTILE]},
              "warnings": [HOSTILE], "rows": [row("a", True), row("b", False)]}
    page = to_html(report)
    assert page.count("alert(") >= 10  # the text is shown, escaped
    for raw in ("<script>alert", "<img src=x", "onerror=\"alert"):
        assert raw not in page


# --- Gradio's file routes ---------------------------------------------------------------------


def test_the_file_routes_serve_session_files_by_their_unguessable_path_and_nothing_else(
        tmp_path):
    """Gradio serves root/sessions (allowed_paths) to whoever names a file there: a session's
    folder and run ids are the secret. The root's keys, job store and bindings beside it, a
    '..' out of sessions/, a link inside a session to a file elsewhere, a folder, and any
    other server file are refused (403)."""
    import os

    from fastapi.testclient import TestClient

    ctx, app = _tiny_studio(tmp_path / "root")
    run = ctx.session_dir("alice") / "train-0123456789abcdef"
    run.mkdir()
    (run / "report.json").write_text("{}")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    os.symlink(outside, run / "link.json")
    ctx._key()
    with TestClient(app) as client:
        assert client.get(f"/gradio_api/file={run / 'report.json'}").json() == {}
        for path in [ctx.root / ".session-key", ctx.root / ".api-token-key",
                     ctx.root / "jobs.sqlite", ctx.root / "sessions" / ".." / ".session-key",
                     run / "link.json", run, ctx.root / "sessions", outside]:
            for route in ("/gradio_api/file=", "/gradio_api/file/"):
                r = client.get(f"{route}{path}")
                assert r.status_code == 403 and "not yours" not in r.text, (route, path)


# --- many sessions from one address -----------------------------------------------------------


def test_one_address_cannot_hold_the_whole_job_queue(tmp_path):
    """Each token (owner) may hold 2 jobs and one address gets 30 tokens an hour: one address
    held all 32 slots (4 x the queue of 8) with 16 tokens, and every other client got 'The
    studio is busy (32 jobs queued or running)'. Now an address holds at most
    STUDIO_JOBS_PER_ADDRESS (default: the queue limit); other addresses still get in."""
    import time

    from fastapi.testclient import TestClient

    from core.jobs import JobKind, available_kinds, get_manager

    def nap(config, out_dir, cb, resolve, mopts):  # held until cancelled (at shutdown)
        for _ in range(600):
            cb.check()
            time.sleep(0.05)

    kinds = {**available_kinds(), "nap": JobKind("nap", "test only", lambda c, r: {}, nap)}
    get_manager(tmp_path, kinds=kinds)
    with rest_client(tmp_path, queue_limit=3) as client:
        codes, ids = [], []
        for _ in range(4):  # four owners, one address (TestClient's)
            me = session(client)
            for _ in range(2):
                r = client.post("/api/jobs", headers=me, json={"kind": "nap"})
                codes.append(r.status_code)
                ids += [(r.json()["id"], me)] if r.status_code == 201 else []
        assert codes == [201] * 3 + [429] * 5
        assert "already has 3 jobs queued or running (STUDIO_JOBS_PER_ADDRESS)" in r.text
        other = TestClient(client.app, client=("10.0.0.2", 50000))  # another address
        assert other.post("/api/jobs", headers=session(other), json={"kind": "nap"}) \
            .status_code == 201
        job, owner = ids[-1]
        assert client.post(f"/api/jobs/{job}/cancel", headers=owner).status_code == 202
        assert client.post("/api/jobs", headers=owner, json={"kind": "nap"}) \
            .status_code == 201  # a slot freed is a slot again


def test_a_job_forgotten_since_does_not_fail_its_addresss_next_submit(tmp_path):
    """The address's share remembers its jobs; one finished and expired since (the store
    forgets finished jobs after STUDIO_SESSION_TTL_HOURS) made the next submit from that
    address a 404 'Job ... was not found' about that old job."""
    with rest_client(tmp_path) as client:
        me = session(client)
        old = client.post("/api/jobs", headers=me, json={"kind": "train", "config": {
            "model": "mlp", "data": "wine", "epochs": 1}})
        assert old.status_code == 201, old.text
        assert client.post(f"/api/jobs/{old.json()['id']}/cancel", headers=me).status_code \
            == 202
        wait_job(client, old.json()["id"], me)
        assert client.app.state.job_manager.expire(-60) == 1  # finished before now + 60 s
        again = client.post("/api/jobs", headers=me, json={"kind": "nope"})
        assert again.status_code == 422 and "'kind' parameter" in again.json()["detail"]


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_jobs_per_address_setting_is_named_at_start(tmp_path, monkeypatch, value):
    """STUDIO_JOBS_PER_ADDRESS=0 was taken as given (every submit then refused: 'already has
    0 jobs'), a word a bare ValueError at start; the other settings name themselves."""
    from core.errors import InvalidParameterError
    from studio.api import create_api

    monkeypatch.setenv("STUDIO_JOBS_PER_ADDRESS", value)
    with pytest.raises(InvalidParameterError, match="'STUDIO_JOBS_PER_ADDRESS'"):
        create_api(tmp_path).state.job_manager.shutdown()
