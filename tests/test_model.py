"""The model family: reference parameter/MAC/prior counts, shapes, priors, codec, stable keys."""

import pytest
import torch

from facedet.detector import ARCHS, build_model
from facedet.detector.codec import decode, encode
from facedet.detector.postprocess import detect_boxes
from facedet.detector.priors import make_priors
from facedet.errors import FacedetError
from facedet.profile import profile

# (arch, params, dense MACs, priors) at the nominal input, as README.md ("Models") lists them.
REFERENCE = [("m4", 56_330, 103.3e6, 3000), ("qvga", 338_538, 211.1e6, 3000), ("quant", 71_154, 179.7e6, 25_600), ("c", 1_526_098, 2016.0e6, 25_600)]


@pytest.mark.parametrize("arch,params,macs,priors", REFERENCE)
def test_reference_counts(arch, params, macs, priors):
    p = profile(arch)
    assert p["params"] == params
    assert p["macs"] == pytest.approx(macs, rel=1e-3)
    assert p["priors"] == priors


def test_m4_layer_breakdown():
    rows = {r["name"]: r for r in profile("m4")["layers"]}
    assert rows["features.0"]["params"] == 44
    assert rows["features.1"]["params"] == 900
    assert rows["features.1"]["macs"] == 64_856_064
    assert rows["features.2"]["params"] == 14_016
    assert sum(r["params"] for n, r in rows.items() if n.startswith("heads")) == 10_970 + 128


@pytest.mark.parametrize("arch", ["m4", "quant"])
def test_forward_shapes_match_priors(arch):
    model = build_model(arch).eval()
    h, w = 200, 264  # a non-nominal size: priors follow the actual head maps
    x = torch.randn(2, model.spec.in_channels, h, w)
    with torch.no_grad():
        conf, loc = model(x)
    assert conf.shape == (2, model.priors(h, w).shape[0], 2)
    assert loc.shape == (2, conf.shape[1], 4)


def test_state_dict_keys_are_stable():
    keys = list(build_model("m4").state_dict())
    assert keys[:3] == ["features.0.conv.weight", "features.0.bn.weight", "features.0.bn.bias"]
    assert "features.1.pool.rnn1.W" in keys and "features.1.pool.rnn2.zeta" in keys
    assert "heads.0.norm.weight" in keys and "heads.0.conf.weight" in keys and "heads.3.loc.bias" in keys
    assert build_model("m4").state_dict()["heads.0.conf.weight"].shape[0] == 4  # max-out


def test_unknown_arch():
    with pytest.raises(FacedetError, match="unknown architecture"):
        build_model("m5")


def test_priors_layout():
    p = make_priors([(2, 3)], [8], [16])
    assert p.shape == (6, 4)
    assert p[0].tolist() == [4.0, 4.0, 16.0, 16.0]
    assert p[1].tolist() == [12.0, 4.0, 16.0, 16.0]  # row-major: x advances first
    assert p[3].tolist() == [4.0, 12.0, 16.0, 16.0]
    m4 = build_model("m4").priors(240, 320)
    assert m4[1200].tolist() == [4.0, 4.0, 16.0, 16.0]  # head 1 starts after 30*40
    assert m4[2400].tolist() == [8.0, 8.0, 32.0, 32.0]


def test_codec_round_trip_and_known_value():
    priors = torch.tensor([[50.0, 40.0, 16.0, 16.0], [10.0, 10.0, 8.0, 8.0]])
    boxes = torch.tensor([[40.0, 30.0, 64.0, 58.0], [5.0, 6.0, 15.0, 13.0]])
    t = encode(boxes, priors)
    torch.testing.assert_close(decode(t, priors), boxes)
    # box centre (52, 44), size (24, 28) against prior (50, 40, 16)
    expected = torch.tensor([2 / (0.1 * 16), 4 / (0.1 * 16), torch.log(torch.tensor(24 / 16)) / 0.2, torch.log(torch.tensor(28 / 16)) / 0.2])
    torch.testing.assert_close(t[0], expected)


def test_maxout_head():
    model = build_model("m4").eval()
    head = model.heads[0]
    x = torch.randn(1, 32, 3, 4)
    with torch.no_grad():
        conf, _ = head(x)
        raw = head.conf(head.norm(x)).permute(0, 2, 3, 1).reshape(1, -1, 4)
    torch.testing.assert_close(conf[..., 0], raw[..., :3].amax(-1))
    torch.testing.assert_close(conf[..., 1], raw[..., 3])


def test_detect_boxes_threshold_and_order():
    priors = torch.tensor([[20.0, 20, 16, 16], [60.0, 20, 16, 16], [21.0, 20, 16, 16]])
    conf = torch.tensor([[0.0, 3.0], [0.0, -3.0], [0.0, 2.0]])  # p(face) .953, .047, .881
    loc = torch.zeros(3, 4)
    boxes, scores = detect_boxes(conf, loc, priors, threshold=0.5, nms_threshold=0.3, max_faces=10)
    assert boxes.tolist() == [[12.0, 12.0, 28.0, 28.0]]  # the third overlaps the first: suppressed
    boxes, scores = detect_boxes(conf, loc, priors, threshold=0.01, nms_threshold=0.99, max_faces=2)
    assert len(scores) == 2 and scores[0] > scores[1]
