"""Untrusted model files: no payload runs, no file is read, one clear error, on every interface.

Each hostile file is built here. A sanity check first shows that the payload is live (plain
``torch.export.load`` / ``torch.jit.load`` / sympy do run it), so a passing refusal means
something. Then the file goes through the Python API, a verb, the CLI and the UI upload.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from core.errors import StudioError
from tests.conftest import FAST_MEASURE

SECRET = b"TOPSECRET-0123456789abcdef"


# --- hostile files ------------------------------------------------------------------------


class _Payload:
    """Unpickling this writes the marker file (what an attacker's code would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)
    return buf.getvalue()


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _plain_pt2(path: Path, *, dynamic: bool = False) -> Path:
    x = torch.randn(2, 1, 8, 8)
    shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic else None
    torch.export.save(torch.export.export(_Net().eval(), (x,), dynamic_shapes=shapes), path)
    return path


def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """Copy a zip archive, passing each (name, bytes) through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))
    return dst


def pt2_with_pickled_sample_inputs(folder: Path, marker: Path) -> Path:
    plain = _plain_pt2(folder / "plain-s.pt2", dynamic=True)
    return _rewrite_zip(plain, folder / "evil-inputs.pt2", lambda n, b: _pickled_payload(marker)
                        if n.endswith("data/sample_inputs/model.pt") else b)


def pt2_with_pickled_weight(folder: Path, marker: Path) -> Path:
    plain = _plain_pt2(folder / "plain-w.pt2", dynamic=True)

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            entry = next(iter(config["config"].values()))
            entry["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return _pickled_payload(marker)
        return data

    return _rewrite_zip(plain, folder / "evil-weight.pt2", edit)


def pt2_with_code_in_a_shape(folder: Path, marker: Path) -> Path:
    """No pickle at all: a symbolic shape that sympy evaluates (``sympify`` is ``eval``)."""
    plain = _plain_pt2(folder / "plain-e.pt2", dynamic=True)
    code = f"Symbol('s0', positive=True, integer=True) + 0*len(open({str(marker)!r}, 'w').name)"

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            text = data.decode()
            start = text.index('"expr_str": "') + len('"expr_str": "')
            end = text.index('"', start)
            return (text[:start] + code.replace('"', '\\"') + text[end:]).encode()
        return data

    return _rewrite_zip(plain, folder / "evil-shape.pt2", edit)


def pt2_declaring_huge_weight(folder: Path) -> Path:
    """An empty weight record makes torch allocate zeros of the declared (huge) shape."""
    plain = _plain_pt2(folder / "plain-h.pt2")

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            entry = next(iter(config["config"].values()))
            entry["tensor_meta"]["sizes"] = [{"as_int": 200_000}, {"as_int": 200_000}]
            return json.dumps(config).encode()
        return b"" if name.endswith("data/weights/weight_0") else data

    return _rewrite_zip(plain, folder / "huge-weight.pt2", edit)


class _Thief(torch.nn.Module):
    """Valid TorchScript without any pickle: ``__setstate__`` reads a file when loaded."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.stolen = torch.zeros(len(SECRET), dtype=torch.uint8)

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.stolen = torch.from_file(self.path, size=26, dtype=torch.uint8)

    def forward(self, x):
        return x.flatten(1)[:, :10] + self.stolen[:10].float()


def torchscript_reading_a_file(folder: Path, secret: Path) -> Path:
    path = folder / "thief.pt"
    torch.jit.save(torch.jit.script(_Thief(str(secret))), str(path))
    return path


def raw_pickle(folder: Path, marker: Path, protocol: int) -> Path:
    path = folder / f"raw{protocol}.onnx"  # the name lies; the content decides
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    return path


def torch_save_checkpoint(folder: Path, marker: Path) -> Path:
    path = folder / "ckpt.pt"
    torch.save({"state": _Payload(marker)}, path)
    return path


def zip_bomb_forged(folder: Path) -> Path:
    """A .pt2 whose central directory declares a ~4 GB member (the bytes are tiny)."""
    data = bytearray(_plain_pt2(folder / "plain-z.pt2").read_bytes())
    central = data.find(b"PK\x01\x02")  # the first member's central directory record
    data[central + 24:central + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # uncompressed size
    path = folder / "bomb-forged.pt2"
    path.write_bytes(bytes(data))
    return path


def zip_bomb_real(folder: Path) -> Path:
    """8 MB of zeros deflated to a few KB, inside a TorchScript-looking archive."""
    path = folder / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/code/__torch__.py", "")
        zf.writestr("bomb/data/0", bytes(8 * 2**20))
    return path


def onnx_with_huge_input(folder: Path) -> Path:
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 100_000, 100_000])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)
    model = helper.make_model(helper.make_graph([node], "huge", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = folder / "huge-input.onnx"
    onnx.save(model, str(path))
    return path


def onnx_with_external_weight(folder: Path, location: str, dims: list[int]) -> Path:
    """y = x @ W with W (``dims``) declared to lie in external data at ``location``."""
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=dims)
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "0")):
        weight.external_data.add(key=key, value=value)
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", dims[0]])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", dims[1]])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "ext", [inp],
                              [out], initializer=[weight])
    path = folder / f"ext-{len(list(folder.iterdir()))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trap(tmp_path_factory):
    """A folder for hostile files, the marker a payload would write, and a secret file."""
    root = tmp_path_factory.mktemp("trap")
    folder = root / "hostile"
    folder.mkdir()
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    return folder, root / "MARKER", secret


@pytest.fixture(scope="module")
def hostile(trap) -> dict[str, Path]:
    return _hostile_files(*trap)


def _hostile_files(folder: Path, marker: Path, secret: Path) -> dict[str, Path]:
    return {
        "plain pt2": _plain_pt2(folder / "fine.pt2", dynamic=True),  # not hostile: code only
        "pickled sample inputs": pt2_with_pickled_sample_inputs(folder, marker),
        "pickled weight": pt2_with_pickled_weight(folder, marker),
        "code in a shape": pt2_with_code_in_a_shape(folder, marker),
        "file-reading TorchScript": torchscript_reading_a_file(folder, secret),
        "raw pickle (protocol 4)": raw_pickle(folder, marker, 4),
        "raw pickle (protocol 0)": raw_pickle(folder, marker, 0),
        "torch.save checkpoint": torch_save_checkpoint(folder, marker),
        "forged zip bomb": zip_bomb_forged(folder),
        "real zip bomb": zip_bomb_real(folder),
    }


def _no_secret_under(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and path.name != "secret.txt":
            assert SECRET not in path.read_bytes(), path


# --- the payloads are live ----------------------------------------------------------------


def test_the_hostile_files_do_run_code_when_loaded_naively(trap, hostile):
    _, marker, _ = trap
    for what in ("pickled sample inputs", "pickled weight", "code in a shape"):
        path = hostile[what]
        try:
            torch.export.load(str(path))
        except Exception:
            pass  # the payload ran before anything failed
        assert marker.exists(), path.name
        marker.unlink()
    stolen = torch.jit.load(str(hostile["file-reading TorchScript"])).stolen
    assert bytes(stolen.tolist()) == SECRET


# --- Python API, a verb, the CLI, the upload ----------------------------------------------


def test_python_api_refuses_every_hostile_file(trap, hostile, digits):
    from core.artifacts import load_model, trusted_model_code
    from core.runs import benchmark_model

    folder, marker, _ = trap
    for what, path in hostile.items():
        with pytest.raises(StudioError) as info:
            load_model(path)
        assert "Traceback" not in str(info.value) and str(folder) not in str(info.value), what
        with pytest.raises(StudioError):
            benchmark_model(path, digits, out_dir=folder.parent / "out",
                            measure_options=FAST_MEASURE)
        if what not in ("file-reading TorchScript", "plain pt2"):  # trusted: these load
            with pytest.raises(StudioError), trusted_model_code():
                load_model(path)
        assert not marker.exists(), what
        assert not (folder.parent / "out").exists(), what
    _no_secret_under(folder.parent)


def test_refusals_name_the_opt_in_and_onnx(trap):
    from core.artifacts import UntrustedModelError, load_model

    folder, marker, secret = trap
    for path in (torchscript_reading_a_file(folder, secret), _plain_pt2(folder / "ok.pt2")):
        with pytest.raises(UntrustedModelError) as info:
            load_model(path)
        text = str(info.value)
        assert "--trust-model" in text and "trust_model=True" in text
        assert "torch.onnx.export" in text


def test_trusted_loading_still_refuses_pickled_parts(trap):
    from core.artifacts import load_model

    folder, marker, _ = trap
    for build in (pt2_with_pickled_sample_inputs, pt2_with_pickled_weight,
                  pt2_with_code_in_a_shape):
        with pytest.raises(StudioError, match="pickle|sympy"):
            load_model(build(folder, marker), trust_model=True)
        assert not marker.exists()
    with pytest.raises(StudioError, match="STUDIO_MAX_MODEL_MB"):
        load_model(pt2_declaring_huge_weight(folder), trust_model=True)


def test_cli_refuses_with_exit_2_and_one_line(trap, hostile, tmp_path):
    from core.cli import run

    _, marker, _ = trap
    for what, path in hostile.items():
        lines: list[str] = []
        code = run(["benchmark", "--model", str(path), "--data", "digits",
                    "--out", str(tmp_path / "cli")], err=lines.append)
        assert code == 2, (what, lines)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "\n" not in lines[0]
        assert not marker.exists() and not (tmp_path / "cli").exists(), what
    _no_secret_under(tmp_path)


def test_cli_trust_model_runs_a_plain_pt2_and_torchscript(tmp_path, capsys, monkeypatch):
    """Without --trust-model both are refused (exit 2); with it both are measured."""
    from core.artifacts import load_model
    from core.cli import run
    from core.data import load_dataset
    from core.measure import evaluate

    monkeypatch.setattr("core.cli._measure_options",
                        lambda args: {**FAST_MEASURE, "threads": 1})
    pt2 = _plain_pt2(tmp_path / "net.pt2", dynamic=True)
    ts = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(_Net().eval(), torch.randn(2, 1, 8, 8)), str(ts))
    for path in (pt2, ts):
        out = tmp_path / f"run-{path.suffix[1:]}"
        args = ["benchmark", "--model", str(path), "--data", "digits", "--out", str(out)]
        assert run(args, err=lambda _m: None) == 2
        assert run([*args, "--trust-model"]) == 0, capsys.readouterr().err
        result = json.loads((out / "report.json").read_text())["result"]
        assert result["size_bytes"] == path.stat().st_size
        # measured on the model itself: the figure equals an independent evaluation
        model = load_model(path, trust_model=True).model
        assert result["accuracy"] == pytest.approx(
            evaluate(model, load_dataset("digits"), "test").accuracy, abs=1e-9)


def test_a_verb_honours_the_opt_in_and_reopens_its_own_torch_artifacts(tmp_path, digits):
    """A torch-* quantization writes a torch.export .pt2; the studio reopens its own file
    without the opt-in, but other bytes given from elsewhere still need it."""
    from core.artifacts import load_model
    from core.quantization import quantize
    from core.runs import open_variant

    net = _Net().eval()
    result = quantize(net, digits, "torch-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=FAST_MEASURE)
    artifact = Path(result.run_dir) / "model.pt2"
    assert artifact.is_file()
    assert open_variant(result.run_dir).loaded.kind == "export"
    changed = tmp_path / "changed.pt2"
    changed.write_bytes(artifact.read_bytes() + b"\0")  # other bytes: not the studio's own
    with pytest.raises(StudioError, match="--trust-model"):
        load_model(changed)


def test_upload_refuses_model_code_and_keeps_nothing(trap, hostile, tmp_path, monkeypatch):
    from studio.uploads import store_model_upload

    folder, marker, _ = trap
    dest = tmp_path / "session" / "uploads"
    dest.mkdir(parents=True)
    mine = dest / "model-mine.onnx"
    mine.write_bytes(b"an earlier upload of the user")
    files = dict(hostile)
    for what, path in files.items():
        with pytest.raises(StudioError) as info:
            store_model_upload(path, dest)
        if what in ("plain pt2", "file-reading TorchScript"):
            assert "ONNX" in str(info.value) and "STUDIO_ALLOW_MODEL_CODE" in str(info.value)
        assert sorted(p.name for p in dest.iterdir()) == ["model-mine.onnx"], what
        assert not marker.exists(), what
    # The operator's opt-in lets plain model code in, never on a Space, never a pickle.
    monkeypatch.setenv("STUDIO_ALLOW_MODEL_CODE", "1")
    stored = store_model_upload(files["plain pt2"], dest)
    assert stored.suffix == ".pt2" and stored.parent == dest
    with pytest.raises(StudioError, match="pickle"):
        store_model_upload(files["pickled weight"], dest)
    monkeypatch.setenv("SPACE_ID", "someone/space")
    with pytest.raises(StudioError, match="ONNX"):
        store_model_upload(files["plain pt2"], dest)
    assert not marker.exists()


def test_ui_upload_refuses_model_code(client, trap, hostile):
    from gradio_client import handle_file

    _, marker, _ = trap
    for what, message in (("pickled weight", "ONNX"), ("file-reading TorchScript", "ONNX"),
                          ("raw pickle (protocol 4)", "pickle"), ("real zip bomb", "bomb")):
        path = hostile[what]
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(path)), "digits", None, "label",
                           api_name="/use_model")
        assert not marker.exists()
        cache = Path(os.environ["GRADIO_TEMP_DIR"])  # the refused upload is not kept
        assert not [p for p in cache.rglob(path.name) if p.is_file()], what
    client.predict(api_name="/list_variants")  # the server still answers


# --- ONNX declared sizes ------------------------------------------------------------------


def test_onnx_huge_declared_input_is_refused_before_allocation(tmp_path, monkeypatch):
    from core.artifacts import load_model

    with pytest.raises(StudioError, match="STUDIO_MAX_MODEL_INPUT"):
        load_model(onnx_with_huge_input(tmp_path))
    monkeypatch.setenv("STUDIO_MAX_MODEL_INPUT", "10")
    small = tmp_path / "small"
    small.mkdir()
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(small / "m.onnx"))
    with pytest.raises(StudioError, match="64"):
        load_model(small / "m.onnx")


def test_onnx_external_data_is_checked_before_it_is_read(tmp_path, monkeypatch):
    from core.artifacts import load_model

    (tmp_path / "w.bin").write_bytes(np.ones((4, 3), np.float32).tobytes())
    with pytest.raises(StudioError, match="STUDIO_MAX_MODEL_MB"):  # 40 GB declared
        load_model(onnx_with_external_weight(tmp_path, "w.bin", [100_000, 100_000]))
    sub = tmp_path / "model"
    sub.mkdir()
    for location in ("../w.bin", "../../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(StudioError, match="outside|beside"):
            load_model(onnx_with_external_weight(sub, location, [4, 3]))
    monkeypatch.setenv("STUDIO_MAX_MODEL_MB", "0.00001")
    with pytest.raises(StudioError, match="STUDIO_MAX_MODEL_MB"):
        load_model(onnx_with_external_weight(tmp_path, "w.bin", [4, 3]))
