"""One verb's reads of an ONNX file share one parse, and the sharing never serves a stale or
changed graph."""

from __future__ import annotations

import onnx
import torch

from core.artifacts import export_onnx
from core.artifacts._onnx import read_graph, shared_onnx_reads, strip_debug_metadata
from core.measure._counting import onnx_macs
from tests.helpers import onnx_zoo


def _model(tmp_path, digits):
    """A small CNN exported with a dynamic batch dimension."""
    net = onnx_zoo.tiny_net(int(digits.num_classes))
    export_onnx(net, tmp_path / "m.onnx", torch.from_numpy(digits.X_test[:2]))
    return tmp_path / "m.onnx"


def _batch_dim(model) -> onnx.TensorShapeProto.Dimension:
    return model.graph.input[0].type.tensor_type.shape.dim[0]


def test_counting_macs_leaves_the_shared_parse_with_its_dynamic_batch(tmp_path, digits):
    """Counting MACs sets batch 1 on its own copy: a later reader still sees a dynamic batch."""
    path = _model(tmp_path, digits)
    assert not _batch_dim(onnx.load(str(path))).dim_value
    with shared_onnx_reads():
        assert onnx_macs(path) > 0
        assert not _batch_dim(read_graph(path, external_data=True)).dim_value


def test_a_file_rewritten_inside_the_block_is_read_again(tmp_path, digits):
    path = _model(tmp_path, digits)
    with shared_onnx_reads():
        before = read_graph(path)
        assert read_graph(path) is before  # one parse for every reader
        if strip_debug_metadata(path) == 0:  # the exporter wrote no debug records: add one
            model = onnx.load(str(path))
            del model.graph.node[-1].metadata_props[:]
            model.graph.node[-1].doc_string = "x" * 64
            onnx.save(model, str(path))
            strip_debug_metadata(path)
        after = read_graph(path)
        assert after is not before
        assert not any(n.doc_string or len(n.metadata_props) for n in after.graph.node)
    assert read_graph(path) is not read_graph(path)  # nothing is kept after the block
