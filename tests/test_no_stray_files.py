"""A verb writes only into its run folder and its own scratch: never into the current folder
(on the shared server, the server's; on a laptop, the user's)."""

from __future__ import annotations

import os
import warnings

import torch

from tests.conftest import FAST_MEASURE
from tests.helpers.zoo import digits_npz, unet_classifier


def test_ort_static_int8_of_an_opset11_upsample_leaves_the_current_folder_alone(
        tmp_path, monkeypatch):
    """ORT's symbolic shape inference fails on Resize at opset 11 and then saves
    'sym_shape_infer_temp.onnx' and a '<uuid>.data' into the current folder; the studio runs it
    where those land in its scratch. The quantization itself still succeeds."""
    from core.quantization import quantize

    data_file = tmp_path / "digits16.npz"
    data = digits_npz(data_file, size=16)
    onnx_file = tmp_path / "unet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(unet_classifier().eval(), (torch.from_numpy(data.X_test[:2]),),
                          str(onnx_file), input_names=["x"], output_names=["logits"],
                          opset_version=11, dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    here = tmp_path / "where-the-user-is"
    here.mkdir()
    monkeypatch.chdir(here)
    report = quantize(onnx_file, str(data_file), "ort-static-int8", out_dir=tmp_path / "q",
                      measure_options=FAST_MEASURE).report
    assert report["result"]["size_bytes"] < report["baseline"]["size_bytes"]
    assert os.listdir(here) == []
