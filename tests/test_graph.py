"""The lowered graph: what profiling, quantization and firmware export walk."""

import pytest
import torch

from facedet.detector import ARCHS, build_model
from facedet.graph import Add, Conv2d, L2Norm, MaxOut, ReplicatePad, RNNPool, run_float


@pytest.mark.parametrize("arch", list(ARCHS))
def test_float_graph_equals_forward(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, model.spec.in_channels, 96, 128) * 40
    with torch.no_grad():
        conf, loc = model(x)
        conf_g, loc_g = run_float(model.lower(), x)
    torch.testing.assert_close(conf_g, conf, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(loc_g, loc, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("hw", [(240, 320), (97, 131), (15, 15)])
def test_graph_shapes_agree_with_blocks(arch, hw):
    """Each block's own output_size equals the graph's shape inference."""
    model = build_model(arch)
    graph = model.structure
    shapes = graph.shapes(*hw)
    if shapes is None:
        assert not model.fits(*hw)
        return
    h, w = hw
    last = {}
    for op in graph.ops:
        last[op.block] = op.output
    for name, block in model.steps():
        if name.startswith("features."):
            assert shapes[last[name]][:2] == block.output_size(h, w)
            h, w = block.output_size(h, w)


def test_m4_graph_structure():
    graph = build_model("m4").lower()
    kinds = [type(op) for op in graph.ops]
    assert kinds.count(RNNPool) == 1 and kinds.count(ReplicatePad) == 1
    assert kinds.count(Add) == 2  # the two residual blocks
    assert kinds.count(L2Norm) == 3 and kinds.count(MaxOut) == 1
    assert len(graph.heads) == 4
    # batch norm is folded: every conv carries its own bias
    assert all(op.bias is not None and op.weight.shape[0] == op.out_channels for op in graph.ops if isinstance(op, Conv2d))
    # the early break: nothing after the last tapped block
    assert graph.ops[-1].name == "heads.3.loc"


def test_structure_graph_has_no_weights():
    graph = build_model("m4").structure
    assert not graph.weights
    assert all(getattr(op, "weight", None) is None for op in graph.ops)
