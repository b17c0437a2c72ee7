"""Sizes are checked before allocation and compute budgets at submit (issue 12): compression
bombs, oversized CSVs and model widths, and over-budget jobs are refused with one message that
names the parameter and the limit, through the Python API, the CLI and REST."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from core.limits import LimitError
from tests.helpers.rest import FAST, rest_client, session


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def header_bomb(path, shape=(400_000_000, 8)):
    """An .npz whose 'X' header declares 25.6 GB of float64 over 1 MB of deflated zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w") as f:
            f.write(_npy_header(shape))
            f.write(bytes(2**20))
        zf.writestr("y.npy", _npy(np.arange(20) % 2))
    return path


def zeros_bomb(path, rows=1_000_000, cols=2):
    """A genuine compression bomb: a consistent 'X' of zeros, written in chunks (no big array)."""
    chunk = bytes(2**20)
    total = rows * cols * 8
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((rows, cols)))
            for start in range(0, total, len(chunk)):
                f.write(chunk[: min(len(chunk), total - start)])
        zf.writestr("y.npy", _npy(np.arange(rows) % 2))
    return path


def test_npz_header_bomb_is_refused_before_any_allocation(tmp_path):
    from core.data import load_dataset

    bomb = header_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 50_000
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="STUDIO_MAX_DATA_MB") as err:
            load_dataset(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"
    assert "3,200,000,000 values" in str(err.value) and str(tmp_path) not in str(err.value)


def test_npz_zip_bomb_is_refused_by_its_declared_sizes(tmp_path, monkeypatch):
    from core.data import load_dataset

    bomb = zeros_bomb(tmp_path / "zeros.npz")  # 16 MB of zeros in ~16 KB
    assert bomb.stat().st_size < 100_000
    monkeypatch.setenv("STUDIO_MAX_DATA_MB", "4")
    with pytest.raises(LimitError, match="'data' parameter is over the limit "
                                         "STUDIO_MAX_DATA_MB=4 MB"):
        load_dataset(bomb)
    monkeypatch.setenv("STUDIO_MAX_DATA_MB", "64")  # raised: the same file loads
    monkeypatch.setenv("STUDIO_MAX_DATA_ROWS", "10")
    with pytest.raises(LimitError, match="STUDIO_MAX_DATA_ROWS=10 rows: 'zeros.npz:X' has "
                                         "1,000,000 rows"):
        load_dataset(bomb)


def test_npz_pickled_member_is_refused_from_its_header(tmp_path):
    from core.data import npz_headers
    from core.errors import DataError

    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", _npy_header((3,), descr="|O") + b"\x80\x04N.")
    with pytest.raises(DataError, match="Python objects \\(pickle\\)"):
        npz_headers(path)


def test_csv_over_the_row_or_size_limit_is_refused(tmp_path, monkeypatch):
    from core.data import load_dataset

    path = tmp_path / "big.csv"
    rows = [f"{i % 7},{i % 5},{i % 3},{i % 2}" for i in range(150)]
    path.write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("STUDIO_MAX_DATA_ROWS", "100")
    with pytest.raises(LimitError, match="STUDIO_MAX_DATA_ROWS=100 rows: 'big.csv' has more "
                                         "than 100 rows"):
        load_dataset(path)
    monkeypatch.setenv("STUDIO_MAX_DATA_ROWS", "150")
    assert load_dataset(path).input_shape == (3,)
    monkeypatch.setenv("STUDIO_MAX_DATA_MB", "0.002")  # 262 float64 values: 65 rows × 4
    with pytest.raises(LimitError, match="STUDIO_MAX_DATA_MB=0.002 MB: 'big.csv' has more "
                                         "than 65 rows × 4 columns"):
        load_dataset(path)


def test_bad_limit_value_is_a_clear_error(tmp_path, monkeypatch):
    from core.data import load_dataset
    from core.errors import InvalidParameterError

    np.savez(tmp_path / "ok.npz", X=np.zeros((20, 3)), y=np.arange(20) % 2)
    monkeypatch.setenv("STUDIO_MAX_DATA_ROWS", "lots")
    with pytest.raises(InvalidParameterError, match="'STUDIO_MAX_DATA_ROWS' parameter must be "
                                                    "an integer"):
        load_dataset(tmp_path / "ok.npz")


@pytest.mark.parametrize("family, kwargs, name", [
    ("mlp", {"input_dim": 64, "hidden_dims": [100000, 100000]}, "hidden_dims"),
    ("cnn", {"input_shape": [3, 64, 64], "channels": [4096] * 6}, "channels"),
    ("vit", {"dim": 4096, "mlp_dim": 16384}, "dim"),
])
def test_oversized_builtin_model_is_refused_before_allocation(family, kwargs, name):
    from core.models import build_model, count_parameters

    with pytest.raises(LimitError, match=f"'{name}' parameter is over the limit "
                                         "STUDIO_MAX_MODEL_PARAMS"):
        build_model(family, **kwargs)
    with pytest.raises(LimitError):
        count_parameters(family, **kwargs)


def test_model_layers_and_params_limits_follow_the_environment(monkeypatch):
    from core.models import build_model, count_parameters

    net = build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)
    n = sum(p.numel() for p in net.parameters())
    assert count_parameters("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4) == n
    monkeypatch.setenv("STUDIO_MAX_MODEL_PARAMS", str(n - 1))
    with pytest.raises(LimitError, match=f"has {n:,} parameters"):
        build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)
    with pytest.raises(LimitError, match="'depth' parameter is over the limit "
                                         "STUDIO_MAX_MODEL_LAYERS=64 layers"):
        build_model("vit", depth=10**9)


def test_cli_refuses_a_bomb_with_exit_2_and_writes_nothing(tmp_path):
    from core.cli import run

    messages: list[str] = []
    out = tmp_path / "run"
    code = run(["train", "--model", "mlp", "--data", str(header_bomb(tmp_path / "b.npz")),
                "--epochs", "1", "--out", str(out)], err=messages.append)
    assert code == 2 and not out.exists()
    assert len(messages) == 1 and "STUDIO_MAX_DATA_MB" in messages[0]


# --- REST: the whole config is checked at submit ---------------------------------------------
@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with rest_client(tmp_path_factory.mktemp("api_root"), measure_options=FAST,
                     per_owner=3) as client:
        yield client


@pytest.fixture
def owner(api):
    return session(api)


def _job_count(api, owner) -> int:
    r = api.get("/api/jobs", headers=owner)
    assert r.status_code == 200, r.text
    return len(r.json()["jobs"])


@pytest.mark.parametrize("body, match", [
    ({"kind": "train", "config": {"model": "mlp", "model_kwargs":
                                  {"hidden_dims": [100000, 100000]}}},
     "'hidden_dims' parameter is over the limit STUDIO_MAX_MODEL_PARAMS"),
    ({"kind": "tune", "config": {"config": {"n_trials": 100000}}},
     "'n_trials' parameter is over the limit STUDIO_MAX_TRIALS"),
    ({"kind": "tune", "config": {"config": {"n_trials": 5, "timeout_s": 10**6}}},
     "'timeout_s' parameter is over the limit STUDIO_MAX_TUNE_S"),
    ({"kind": "tune", "config": {"config": {"target": "architecture", "model": "mlp",
                                            "space": {"width": [16, 10**6]}}}},
     "'hidden_dims' parameter is over the limit STUDIO_MAX_MODEL_PARAMS"),
    ({"kind": "train", "config": {"model": "cnn", "epochs": 9000}},
     "'epochs' parameter is over the limit STUDIO_MAX_TRAIN_SAMPLES"),
    ({"kind": "scale", "config": {"config": {"client_counts": [4, 100000]}}},
     "'client_counts' parameter is over the limit STUDIO_MAX_CLIENTS"),
    ({"kind": "scale", "config": {"config": {"client_counts": [1000], "rounds": 1000}}},
     "'rounds' parameter is over the limit STUDIO_MAX_TRAIN_SAMPLES"),
    ({"kind": "recipe", "config": {"recipe": {"model": "mlp", "model_kwargs": {
        "hidden_dims": [100000, 100000]}, "steps": [{"train": {"epochs": 1}}]}}},
     "'hidden_dims' parameter is over the limit"),
    ({"kind": "auto", "config": {"model": "cnn", "config": {"train_epochs": 9000}}},
     "'train_epochs' parameter is over the limit STUDIO_MAX_TRAIN_SAMPLES"),
])
def test_over_limit_job_is_a_422_at_submit_and_nothing_is_queued(api, owner, body, match):
    before = _job_count(api, owner)
    r = api.post("/api/jobs", json=body, headers=owner)
    assert r.status_code == 422, r.text
    assert match in r.json()["detail"], r.json()["detail"]
    assert _job_count(api, owner) == before


def test_uploaded_data_bomb_is_refused_at_submit(api, owner, tmp_path):
    bomb = header_bomb(tmp_path / "bomb.npz").read_bytes()
    r = api.post("/api/uploads", files={"file": ("bomb.npz", bomb)}, data={"kind": "data"},
                 headers=owner)
    if r.status_code == 422:  # refused at upload already: also fine
        assert "STUDIO_MAX_DATA_MB" in r.json()["detail"]
        return
    assert r.status_code == 201, r.text
    before = _job_count(api, owner)
    r = api.post("/api/jobs", json={"kind": "train", "config": {
        "model": "mlp", "data": r.json()["use"]["data"], "epochs": 1}}, headers=owner)
    assert r.status_code == 422 and "STUDIO_MAX_DATA_MB" in r.json()["detail"], r.text
    assert _job_count(api, owner) == before
    assert api.get("/api/kinds", headers=owner).status_code == 200  # the server still answers


def test_tune_job_without_a_time_limit_gets_the_servers(monkeypatch):
    from core.jobs import KINDS

    monkeypatch.setenv("STUDIO_MAX_TUNE_S", "120")
    clean = KINDS["tune"].validate({"config": {"n_trials": 3}}, None)
    assert clean["config"]["timeout_s"] == 120.0 and clean["config"]["n_trials"] == 3
    clean = KINDS["tune"].validate({"config": {"n_trials": 3, "timeout_s": 60}}, None)
    assert clean["config"]["timeout_s"] == 60


@pytest.mark.parametrize("name", ["digits", "wine", "breast_cancer", "health"])
def test_builtin_sizes_used_by_the_budgets_match_the_data(name):
    from core.data import BUILTIN_SIZES, load_dataset, split_sizes

    rows, shape, classes = BUILTIN_SIZES[name]
    for test, val in ((0.2, 0.15), (0.3, 0.0)):
        ds = load_dataset(name, test_fraction=test, val_fraction=val)
        assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == \
            split_sizes(rows, test_fraction=test, val_fraction=val)
    assert ds.input_shape == shape and ds.num_classes == classes


def test_documented_defaults_pass_the_budgets():
    """The README's job examples (defaults) are within every default limit."""
    from core.jobs import KINDS

    for kind, config in [("train", {"model": "cnn", "data": "digits", "epochs": 10}),
                         ("tune", {"config": {}}), ("scale", {"config": {}}),
                         ("auto", {"config": {}}),
                         ("recipe", {"recipe": {"steps": [{"train": {"epochs": 10}},
                                                          {"prune": {"finetune_epochs": 3}},
                                                          {"quantize": {}}]}})]:
        assert KINDS[kind].validate(config, None)


def test_readme_lists_every_limit_with_its_default():
    from pathlib import Path

    from core.limits import limits_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert limits_table() in readme


def test_an_npz_bomb_is_refused_at_upload_and_not_kept(tmp_path, monkeypatch):
    """The UI/REST upload step reads the .npz headers: a bomb never reaches a job."""
    import numpy as np

    from core.errors import StudioError
    from studio.uploads import store_data_upload

    monkeypatch.setenv("STUDIO_MAX_DATA_MB", "1")
    bomb = tmp_path / "zeros.npz"
    np.savez_compressed(bomb, X=np.zeros((400, 1024), np.float32), y=np.zeros(400, np.int64))
    with pytest.raises(StudioError, match="STUDIO_MAX_DATA_MB"):
        store_data_upload(bomb, tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())
