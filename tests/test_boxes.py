"""Box ops and NMS against slow, obviously-correct oracles; fixtures on exact thresholds."""

import numpy as np
import pytest
import torch

from facedet.boxes import box_iou, clip_boxes, cxcywh_to_xyxy, nms, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh


def iou_oracle(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_oracle(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(iou_oracle(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def random_boxes(n, seed, size=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


def test_iou_matches_oracle():
    a, b = random_boxes(7, 0), random_boxes(5, 1)
    got = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            assert got[i, j].item() == pytest.approx(iou_oracle(a[i].tolist(), b[j].tolist()), abs=1e-6)


def test_iou_degenerate_boxes_are_zero_not_nan():
    z = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    assert box_iou(z, z).item() == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7])
def test_nms_matches_oracle(seed, thr):
    boxes = random_boxes(60, seed)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(100 + seed))
    got = nms(boxes, scores, thr).tolist()
    assert got == nms_oracle(boxes.tolist(), scores.tolist(), thr)


@pytest.mark.parametrize("block", [5, 16])
def test_nms_blocks_match_oracle(block):
    boxes = random_boxes(90, 42, size=40.0)  # dense: long chains across blocks
    scores = torch.rand(90, generator=torch.Generator().manual_seed(7))
    assert nms(boxes, scores, 0.3, block_size=block).tolist() == nms_oracle(boxes.tolist(), scores.tolist(), 0.3)


def test_nms_iou_exactly_on_threshold_is_kept():
    # IoU of these two is exactly 1/3: area 2 each, intersection 1 -> 1/(2+2-1).
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert box_iou(boxes[:1], boxes[1:]).item() == pytest.approx(1 / 3)
    assert nms(boxes, scores, 1 / 3).tolist() == [0, 1]  # not strictly above: kept
    assert nms(boxes, scores, 0.33).tolist() == [0]


def test_nms_chain_needs_greedy_order():
    """A suppresses B, B would suppress C; greedy keeps A and C."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [4.0, 0, 14, 10], [8.0, 0, 18, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms_oracle(boxes.tolist(), scores.tolist(), 0.3) == [0, 2]


def test_nms_ties_keep_input_order_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    assert nms(boxes, torch.tensor([0.5, 0.5]), 0.3).tolist() == [0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.3).numel() == 0


@pytest.mark.parametrize("block", [1, 3, 7, 128])
def test_long_suppression_chain(block):
    # 40 boxes each overlapping the next by IoU ~0.43: greedy keeps every other one.
    boxes = torch.tensor([[i * 4.0, 0, i * 4.0 + 10, 10] for i in range(40)])
    scores = torch.linspace(1, 0.1, 40)
    assert nms(boxes, scores, 0.3, block_size=block).tolist() == nms_oracle(boxes.tolist(), scores.tolist(), 0.3)


def test_conversions_round_trip():
    b = random_boxes(10, 3)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    n = b.numpy().astype(np.float64)
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(n)), n)
    assert xyxy_to_xywh(torch.tensor([[1.0, 2, 4, 8]])).tolist() == [[1.0, 2, 3, 6]]


def test_clip():
    out = clip_boxes(torch.tensor([[-5.0, -1, 50, 70]]), height=60, width=40)
    assert out.tolist() == [[0.0, 0.0, 40.0, 60.0]]
