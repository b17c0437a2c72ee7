"""A native crash on a user's model ends that action with a clear message; the server serves on.

ONNX Runtime segfaults when it loads the FP16 form of a ViT-style graph (MEASURED.md). Through
the UI the studio refuses it clearly, and the same browser session keeps working.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import zoo


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
    """An (untrained) ViT-style ONNX with nn.MultiheadAttention and 3x32x32 digits as .npz."""
    folder = tmp_path_factory.mktemp("vit")
    model = zoo.vit_like(num_classes=10).eval()
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(folder / "vit.onnx"),
                      dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "n"}})
    zoo.save_npz(zoo.digits_3x32(), folder / "digits3.npz")
    return folder / "vit.onnx", folder / "digits3.npz"


def test_ort_crash_on_fp16_vit_is_refused_and_the_session_goes_on(client, vit_files):
    from gradio_client import handle_file

    model, data = vit_files
    status, _table = client.predict(handle_file(str(model)), "digits", handle_file(str(data)),
                                    "label", api_name="/use_model")
    assert "Measured" in status
    choice = client.predict(api_name="/quantize_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    with pytest.raises(Exception, match="ONNX Runtime crashes"):
        client.predict(value, "ort-fp16", "minmax", 64, False, "off", False, "U8S8", 32,
                       "x86", 1, 1e-3, api_name="/quantize")
    listed, _plot, _choice = client.predict(api_name="/list_variants")
    assert len(listed["data"]) == 1  # the server answers; the failed variant left nothing
