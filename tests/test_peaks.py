"""This CPU's measured peaks (cached per machine), the share of them a variant reaches, and the
memory probe that needs only ONNX Runtime for an ONNX file."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_peaks_are_measured_once_and_cached_per_machine(cache, monkeypatch):
    from core.measure import _peak

    monkeypatch.setattr(_peak, "_ROUNDS", 3)  # a quick microbenchmark; real GEMMs still run
    calls = []
    real = _peak.measure_peaks
    monkeypatch.setattr(_peak, "measure_peaks", lambda: calls.append(1) or real())
    first = _peak.peaks()
    for kind in ("fp32", "int8"):
        assert first[kind]["1"] > 0 and first[kind]["all"] > 0
    assert first["environment"]["isa"] == _peak._key_fields()["isa"]
    files = list(cache.glob("peaks-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["fp32"] == first["fp32"]
    assert _peak.peaks() == first and len(calls) == 1  # read back, not measured again
    # Another CPU or library version is another key: measured anew.
    fields = {**_peak._key_fields(), "onnxruntime": "0.0-other"}
    monkeypatch.setattr(_peak, "_key_fields", lambda: fields)
    assert _peak.cached_peaks() is None
    _peak.peaks()
    assert len(calls) == 2 and len(list(cache.glob("peaks-*.json"))) == 2


def test_peak_microbenchmark_waits_for_a_running_measurement(monkeypatch):
    """It changes torch's process-wide thread count: only under the measurement lock."""
    import threading

    import torch

    from core.measure import _peak, measurement_lock

    monkeypatch.setattr(_peak, "_ROUNDS", 1)
    before = torch.get_num_threads()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (_peak.measure_peaks(), done.set()), daemon=True)
    with measurement_lock():  # another timing runs in this process
        worker.start()
        assert not done.wait(1.0)  # the microbenchmark has not run meanwhile
        assert torch.get_num_threads() == before
    worker.join(60)
    assert done.is_set() and torch.get_num_threads() == before


def test_efficiency_is_the_share_of_the_matching_peak():
    from core.measure._efficiency import efficiency

    peak = {"fp32": {"1": 50.0, "all": 90.0}, "int8": {"1": 200.0, "all": 380.0},
            "threads_all": 2}
    lat = {"1": {"p50": 1.0}, "64": {"p50": 32.0}}
    eff = efficiency(10_000_000, lat, precision="int8", threads=1, peak=peak)
    assert eff["peak_gmacs"] == 200.0
    assert eff["by_batch"]["64"]["gmacs_per_s"] == pytest.approx(20.0)
    assert eff["by_batch"]["64"]["share_of_peak"] == pytest.approx(0.1)
    at_all = efficiency(10_000_000, lat, precision="fp32", threads=2, peak=peak)
    assert at_all["by_batch"]["1"]["share_of_peak"] == pytest.approx(10.0 / 90.0)
    assert efficiency(10_000_000, lat, precision="fp32", threads=3, peak=peak)[
        "by_batch"]["1"]["share_of_peak"] is None  # no peak measured at 3 threads
    assert efficiency(None, lat, precision="fp32", threads=1, peak=peak) is None


def test_memory_probe_of_an_onnx_file_imports_no_torch(tmp_path):
    import torch

    from core.measure._memory import probe_memory

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(144, 3)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    found = probe_memory([path], batch_size=8)[str(path)]
    assert found is not None and found["peak_mb"] >= 0
    assert "onnxruntime" in found["imported"]
    assert not {"torch", "onnx", "sklearn", "scipy"} & set(found["imported"])


def test_memory_probe_forked_per_file_matches_a_fresh_process(tmp_path):
    """One probe process forks a child per file: each figure is what a fresh process of its
    own measures (library pages the fork did not map are not counted as the model's)."""
    import json
    import subprocess
    import sys

    import torch

    from core.measure import _memory
    from core.measure._memory import probe_memory

    paths = []
    for name, width in (("a", 4), ("b", 64)):
        model = torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.Flatten(),
                                    torch.nn.Linear(36 * width, 3)).eval()
        paths.append(tmp_path / f"{name}.onnx")
        torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(paths[-1]), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    forked = probe_memory(paths, batch_size=8)
    # the same script with no os.fork: it probes in its own process, as before forking
    alone = "import os, runpy, sys; del os.fork; sys.argv = sys.argv[1:]; " \
            "runpy.run_path(sys.argv[0], run_name='__main__')"
    for path in paths:
        out = subprocess.run([sys.executable, "-c", alone, _memory.__file__, "8",
                              json.dumps([[str(path.resolve()), False]])],
                             capture_output=True, text=True, check=True).stdout
        fresh = json.loads(out.splitlines()[-1])["peak_mb"]
        assert forked[str(path)]["peak_mb"] == pytest.approx(fresh, abs=0.5)


def test_memory_probes_side_by_side_each_report_their_figure(tmp_path, monkeypatch):
    """Children forked side by side share the probe's stdout: each line must arrive whole,
    also where stdout is unbuffered (PYTHONUNBUFFERED, as CI often sets: a print is then two
    writes, and another child's line could land between them)."""
    import shutil

    import torch

    from core.measure._memory import probe_memory

    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(144, 3)).eval()
    first = tmp_path / "m0.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(first), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    paths = [first] + [shutil.copy(first, tmp_path / f"m{i}.onnx") for i in range(1, 6)]
    for _ in range(3):
        found = probe_memory(paths, batch_size=8)
        assert all(found[str(p)] is not None for p in paths), found
