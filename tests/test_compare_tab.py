"""The Comparison, Auto and Jobs tabs driven through gradio_client, as a browser would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml


def _value(choice):
    return choice["value"] if isinstance(choice, dict) else choice


def _path(f):
    return f["path"] if isinstance(f, dict) else f


def test_remeasure_all_exports_recipe_and_jobs(client):
    client.predict("digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    status, table, *_plots, files = client.predict(api_name="/remeasure_all")
    assert "Re-measured" in status and "Pareto front" in status
    assert len(table["data"]) == 1
    names = sorted(Path(_path(f)).name for f in files)
    assert names == ["comparison.csv", "report.html", "report.json", "report.md"]
    html = Path(next(_path(f) for f in files if _path(f).endswith(".html"))).read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    # The new comparison folder is not a variant of the session.
    listed, _plot, choice = client.predict(api_name="/list_variants")
    assert len(listed["data"]) == 1
    recipe = yaml.safe_load(Path(client.predict(_value(choice), api_name="/save_recipe"))
                            .read_text())
    assert recipe["model"] == "cnn" and recipe["steps"][0]["train"]["epochs"] == 2
    jobs, _ = client.predict(api_name="/list_jobs")
    kinds = [(row[1], row[2]) for row in jobs["data"]]
    assert ("compare", "succeeded") in kinds


def test_a_saved_recipe_names_the_data_file_never_its_server_path(client, studio_server,
                                                                   tmp_path):
    """A run on uploaded data: the recipe the Comparison tab saves names the data file, and no
    path of the server's is in it (it held the stored upload's path)."""
    import numpy as np
    from gradio_client import handle_file

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", X=rng.normal(size=(90, 4)).astype(np.float32),
             y=np.arange(90) % 3)
    client.predict("digits", "mlp", handle_file(str(tmp_path / "mine.npz")), "label", 1, 0.01,
                   api_name="/train_baseline")
    _listed, _plot, choice = client.predict(api_name="/list_variants")
    text = Path(client.predict(_value(choice), api_name="/save_recipe")).read_text()
    _, ctx = studio_server
    assert re.fullmatch(r"[\w.-]+\.npz", yaml.safe_load(text)["data"])  # a name, no folder
    assert str(ctx.root) not in text and "/tmp" not in text


def test_auto_tab_picks_and_explains(client):
    client.predict("digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    job = client.submit(None, "size", 0.05, 1, ["ort-fp32", "ort-static-int8"],
                        api_name="/auto")
    status, explanation, table, _chart, files = job.result()
    assert "Done" in status and "Why the others lost" in explanation
    # Candidates appear one by one while Auto runs, before the final table.
    live = [out[2] for out in job.outputs()[:-1]
            if isinstance(out[2], dict) and out[2].get("data")]
    assert [row[0] for row in live[0]["data"]] == ["ort-fp32"]
    assert {row[0] for row in live[-1]["data"]} == {"ort-fp32", "ort-static-int8"}
    candidates = {row[0] for row in table["data"]}
    assert {"baseline", "ort-fp32", "ort-static-int8"} <= candidates
    assert any(_path(f).endswith(".zip") for f in files)
    listed, _plot, _choice = client.predict(api_name="/list_variants")
    ops = [row[listed["headers"].index("operation")] for row in listed["data"]]
    assert "auto" in ops
    names = [row[listed["headers"].index("name")] for row in listed["data"]]
    assert any(n.startswith("Auto winner") for n in names) and "CNN on digits" in names
    jobs, _ = client.predict(api_name="/list_jobs")
    assert ("auto", "succeeded") in [(row[1], row[2]) for row in jobs["data"]]


def test_bad_input_on_my_endpoints_gets_clear_errors(client):
    cases = [
        ("/save_recipe", ("../../etc/passwd",), "not found"),
        ("/save_recipe", ("",), "Pick a variant"),
        ("/auto", (None, "speed", 5.0, 1, []), "tolerance|maximum"),
        ("/auto", (None, "speed", 0.01, 1, ["magic"]), "candidates|not in the list"),
        ("/auto", ("train-doesnotexist", "speed", 0.01, 1, []), "not found"),
        ("/cancel_job", ("job-doesnotexist",), "not found"),
        ("/open_job", ("job-doesnotexist",), "not found"),
    ]
    for api_name, args, match in cases:
        with pytest.raises(Exception, match=match) as info:
            client.predict(*args, api_name=api_name)
        assert "Traceback" not in str(info.value)
    # No variants yet in this fresh session: a clear message, not a crash.
    with pytest.raises(Exception, match="No variants yet"):
        client.predict(api_name="/remeasure_all")


RECIPE = """name: same-everywhere
model: mlp
data: wine
steps:
  - train: {epochs: 2}
  - quantize: {method: ort-dynamic-int8, calibration_size: 64}
  - export: {}
"""


def test_recipe_from_the_ui_gives_the_same_variants_as_the_cli(client, studio_server, tmp_path):
    import hashlib
    import json

    from core.cli import run

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    assert run(["run", str(recipe), "--out", str(tmp_path / "cli"), "--budget", "0.02",
                "--no-memory"]) == 0
    status, steps = client.predict(RECIPE, None, api_name="/run_recipe")
    assert "Done" in status and [r[0] for r in steps["data"]] == ["train", "quantize", "export"]
    _, ctx = studio_server
    ui = next(p for p in sorted((ctx.root / "sessions").glob("*/recipe-*"))
              if json.loads((p / "report.json").read_text())["method"] == "same-everywhere")

    def digest(folder, name):
        return hashlib.sha256((folder / "steps" / name).read_bytes()).hexdigest()

    cli = tmp_path / "cli"
    assert digest(ui, "01-train/model.safetensors") == digest(cli, "01-train/model.safetensors")
    reports = [json.loads((d / "report.json").read_text()) for d in (ui, cli)]
    assert reports[0]["result"]["accuracy"] == reports[1]["result"]["accuracy"]
    assert reports[0]["config"] == reports[1]["config"]
    with pytest.raises(Exception, match="server paths|steps"):
        client.predict("model: /etc/x\nsteps: [{prune: {}}]\n", None, api_name="/run_recipe")
