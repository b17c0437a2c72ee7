"""Real-architecture zoo, round 3: EfficientNet-style (SE with a sigmoid gate, SiLU/Hardswish),
ConvNeXt-style (7x7 depthwise, channels-last LayerNorm, layer scale), a bidirectional LSTM and
an nn.Embedding over int64 token ids, exported as users export them. Each verb gives a truthful
result (accuracy equal to an onnxruntime-only check, size equal to the file's bytes) or one
clear refusal naming what does not apply, never an internal error or a hang.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.conftest import FAST_MEASURE
from tests.helpers.onnx_zoo import export_default, ort_accuracy
from tests.helpers.zoo import (
    birnn_classifier,
    convnext_like,
    digits_npz,
    efficientnet_like,
    export_sequence_onnx,
    fit,
    save_torch_file,
    sequence_arrays,
    token_arrays,
    token_classifier,
)


def _fit(model, data, **options):
    """``fit`` on one torch thread: on 2 shared cores, 2 threads took 2-35x longer here."""
    from core.measure import torch_threads

    with torch_threads(1):
        return fit(model, data, **options)


def _legacy_onnx(model, path, example):
    """The legacy exporter with a dynamic batch (one file, opset 17)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), input_names=["x"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def test_efficientnet_static_int8_is_truthful_and_says_when_the_file_grew(img_npz, tmp_path):
    """An EfficientNet-style export quantized to static INT8: the report's accuracy is the
    shipped file's under onnxruntime alone, its size the file's bytes, and a file larger
    than the FP32 one is said in a warning (the QDQ graph outweighs a tiny model's weights)."""
    from core import quantize

    path, data = img_npz
    model = _fit(efficientnet_like(), data, epochs=2, rows=400)
    onnx_file = _legacy_onnx(model, tmp_path / "eff.onnx", torch.from_numpy(data.X_test[:2]))
    out = tmp_path / "q"
    report = quantize(onnx_file, path, "ort-static-int8", out_dir=out,
                      measure_options=FAST_MEASURE).report
    res, base = report["result"], report["baseline"]
    assert res["accuracy"] == pytest.approx(ort_accuracy(out, data.X_test, data.y_test))
    assert res["size_bytes"] == (out / "model.onnx").stat().st_size
    assert base["size_bytes"] == onnx_file.stat().st_size
    grew = [w for w in report["warnings"] if "larger than the baseline" in w]
    assert bool(grew) == (res["size_bytes"] > base["size_bytes"])


def test_convnext_onnx_structured_pruning_is_refused_naming_the_transpose(img_npz, tmp_path):
    """A ConvNeXt-style export moves channels last (Transpose) for its LayerNorm and MatMul:
    Torch-Pruning's grouping ran past 7 minutes (8 GB) on it. Structured pruning is refused
    up front naming the node, nothing written; unsupported_methods says the same."""
    from core import prune
    from core.errors import UnsupportedModelError
    from core.pruning import unsupported_methods

    path, data = img_npz
    onnx_file = _legacy_onnx(convnext_like(), tmp_path / "cnx.onnx",
                             torch.from_numpy(data.X_test[:2]))
    reasons = unsupported_methods(onnx_file, path, ["structured-l2", "l1-unstructured"])
    assert "Transpose" in reasons["structured-l2"] and "l1-unstructured" not in reasons
    with pytest.raises(UnsupportedModelError, match=r"Transpose '.*' \(perm \[0, 2, 3, 1\]\)"):
        prune(onnx_file, path, "structured-l2", out_dir=tmp_path / "p",
              measure_options=FAST_MEASURE)
    assert not (tmp_path / "p").exists()


def test_dynamo_convnext_export_converts_to_a_module_that_keeps_every_row(img_npz, tmp_path):
    """torch's default export fixes the batch at 1 and flattens with a constant Gather, so
    the converted module returned the first row only for any batch (conversion refused as
    'disagrees by up to inf'); it now runs row by row and equals onnxruntime on each row."""
    import onnxruntime as ort

    from core.artifacts import onnx_to_torch

    _, data = img_npz
    onnx_file = export_default(convnext_like().eval(), tmp_path / "cnx.onnx",
                               torch.from_numpy(data.X_test[:1]))
    module = onnx_to_torch(onnx_file).eval()
    X = data.X_test[:5]
    with torch.no_grad():
        got = module(torch.from_numpy(X)).numpy()
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: X[i:i + 1]})[0]
                           for i in range(len(X))])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """A trained token classifier saved as TorchScript and as a dynamic-batch .pt2."""
    folder = tmp_path_factory.mktemp("tokens")
    X, y = token_arrays()
    np.savez(folder / "tokens.npz", X=X, y=y)
    model = token_classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    model.eval()
    torch.jit.save(torch.jit.trace(model, Xt[:2]), str(folder / "tok.pt"))
    program = torch.export.export(model, (Xt[:2],),
                                  dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(folder / "tok.pt2"))
    return folder


@pytest.mark.parametrize("name", ["tok.pt", "tok.pt2"])
@pytest.mark.parametrize("verb", ["benchmark", "ort-static-int8", "l1-unstructured"])
def test_torch_token_model_is_refused_naming_integer_inputs(token_model, name, verb, tmp_path):
    """An nn.Embedding over int64 token ids saved as TorchScript or .pt2 failed with an
    internal error (torch's 'indices ... Long, Int' with a TorchScript traceback); every verb
    now refuses it naming integer inputs, or with the format's own refusal, nothing written."""
    from core import prune, quantize
    from core.artifacts import trusted_model_code
    from core.errors import UnsupportedModelError
    from core.runs import benchmark_model

    model, data, out = token_model / name, token_model / "tokens.npz", tmp_path / "out"
    run = {"benchmark": lambda: benchmark_model(model, data, out_dir=out,
                                                measure_options=FAST_MEASURE),
           "ort-static-int8": lambda: quantize(model, data, verb, out_dir=out,
                                               measure_options=FAST_MEASURE),
           "l1-unstructured": lambda: prune(model, data, verb, out_dir=out, finetune_epochs=0,
                                            measure_options=FAST_MEASURE)}[verb]
    with trusted_model_code(), pytest.raises(UnsupportedModelError) as info:
        run()
    text = str(info.value)
    assert "integer inputs" in text or (name.endswith(".pt2") and "torch.export" in text)
    assert "Traceback" not in text and "\n" not in text
    assert not out.exists()


@pytest.mark.parametrize("name", ["eff.pt", "eff.pt2"])
def test_profile_of_a_torchscript_or_pt2_model_is_a_clear_refusal(name, tmp_path):
    """Layer-wise profiling hooks each layer: a TorchScript model took no hooks (internal
    error) and a .pt2 program refused eval() (internal error); both are refused, naming
    what applies. The same model as ONNX is profiled layer by layer."""
    from core import profile
    from core.artifacts import trusted_model_code
    from core.errors import UnsupportedModelError

    model, x = efficientnet_like().eval(), torch.randn(2, 3, 16, 16)
    path = save_torch_file(model, x, tmp_path / name)
    with trusted_model_code(), pytest.raises(UnsupportedModelError, match="ONNX export"):
        profile(path, x.numpy(), runs=3, warmup=1)
    onnx_file = _legacy_onnx(model, tmp_path / "eff.onnx", x)
    prof = profile(onnx_file, x.numpy(), runs=3, warmup=1)
    assert prof.backend == "onnxruntime" and len(prof.layers) > 5


def test_bidirectional_lstm_quantizes_and_refuses_pruning_naming_lstm(tmp_path):
    """A 2-layer bidirectional LSTM (ONNX LSTM op, direction bidirectional) read from h_n:
    dynamic INT8 scores what onnxruntime alone scores; pruning names the LSTM operator."""
    from core import prune, quantize
    from core.data import load_dataset
    from core.errors import UnsupportedModelError

    X, y = sequence_arrays(steps=12, features=4)
    np.savez(tmp_path / "seq.npz", X=X, y=y)
    data = load_dataset(tmp_path / "seq.npz", channel_axis=False)
    model = _fit(birnn_classifier("lstm"), data, epochs=8, lr=5e-3)
    onnx_file = export_sequence_onnx(model, tmp_path / "bilstm.onnx",
                                     torch.from_numpy(data.X_test[:2]))
    out = tmp_path / "q"
    report = quantize(onnx_file, tmp_path / "seq.npz", "ort-dynamic-int8", out_dir=out,
                      measure_options=FAST_MEASURE).report
    assert report["result"]["accuracy"] == pytest.approx(
        ort_accuracy(out, data.X_test, data.y_test))
    assert report["result"]["accuracy"] > 0.8
    with pytest.raises(UnsupportedModelError, match=r"operator\(s\) LSTM"):
        prune(onnx_file, tmp_path / "seq.npz", "l1-unstructured", out_dir=tmp_path / "p",
              measure_options=FAST_MEASURE)


def test_fixed_batch_pt2_unstructured_prune_is_refused_naming_the_shapes(img_npz, tmp_path):
    """A .pt2 exported without a dynamic batch: l1-unstructured ended in an internal error
    (torch.export's shape guard is an AssertionError); now the refusal says how to export."""
    from core import prune
    from core.artifacts import trusted_model_code
    from core.errors import UnsupportedModelError

    path, _ = img_npz
    pt2 = tmp_path / "eff.pt2"
    torch.export.save(torch.export.export(efficientnet_like().eval(),
                                          (torch.randn(1, 3, 16, 16),)), str(pt2))
    with trusted_model_code(), pytest.raises(UnsupportedModelError, match="dynamic_shapes"):
        prune(pt2, path, "l1-unstructured", out_dir=tmp_path / "p", finetune_epochs=0,
              measure_options=FAST_MEASURE)
    assert not (tmp_path / "p").exists()


def test_torchscript_unstructured_prune_fine_tunes(tmp_path):
    """l1-unstructured of a TorchScript model with a fine-tune (5 epochs by default) was an
    internal error for any TorchScript file: its deep copy's parameters are clones with a
    grad_fn ('can't optimize a non-leaf Tensor'). It now fine-tunes; the shipped ONNX scores
    what the report says and the input file is unchanged."""
    from core import prune
    from core.artifacts import trusted_model_code
    from core.measure import torch_threads

    data = digits_npz(tmp_path / "digits8.npz", size=8)  # 3x8x8: a cheap epoch
    pt = tmp_path / "eff.pt"
    torch.jit.save(torch.jit.trace(efficientnet_like().eval(), torch.randn(2, 3, 8, 8)),
                   str(pt))
    before = pt.read_bytes()
    with trusted_model_code(), torch_threads(1):  # the fine-tune on one thread: steadier
        report = prune(pt, tmp_path / "digits8.npz", "l1-unstructured", out_dir=tmp_path / "p",
                       sparsity=0.5, finetune_epochs=1, measure_options=FAST_MEASURE).report
    res = report["result"]
    assert res["nonzero_params"] < 0.75 * res["params"]
    assert res["accuracy"] == pytest.approx(ort_accuracy(tmp_path / "p", data.X_test,
                                                         data.y_test))
    assert len(report["pruning"]["finetune"][0]["history"]) == 1  # the epoch ran
    assert pt.read_bytes() == before
