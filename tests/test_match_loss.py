"""Matching and MultiBox loss against slow, hand-written oracles (docs/training.md, "Matching" and "Loss")."""

import math

import pytest
import torch

from facedet.training.loss import multibox_loss
from facedet.training.match import match, match_batch

# --------------------------------------------------------------------------- oracles (plain Python)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _corners(p):
    cx, cy, w, h = p
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def oracle_match(gts, ignore, priors, th=(0.1, 0.35, 0.5)):
    """Literal transcription of the rules, one prior and one face at a time."""
    pri = [_corners(p) for p in priors]
    real = [g for g, ig in zip(gts, ignore) if not ig]
    ign = [g for g, ig in zip(gts, ignore) if ig]
    labels = [0] * len(pri)
    match_of = [None] * len(pri)
    if real:
        ious = [[_iou(g, p) for p in pri] for g in real]
        overlap, best = [], []
        for k in range(len(pri)):
            col = [ious[j][k] for j in range(len(real))]
            m = max(col)
            overlap.append(m)
            best.append(col.index(m))  # first face wins ties
        per_face = [max(row) for row in ious]
        n = (sum(v >= th[1] for v in per_face) + sum(v >= th[2] for v in per_face)) // 2
        for j, row in enumerate(real):
            if per_face[j] > 0:
                k = ious[j].index(per_face[j])  # first prior wins ties
                overlap[k] = 2.0
                best[k] = j  # later faces overwrite
        for k in range(len(pri)):
            if overlap[k] >= th[1]:
                labels[k] = 1
        cand = [k for k in range(len(pri)) if th[0] < overlap[k] < th[1]]
        cand.sort(key=lambda k: (-overlap[k], k))
        for k in cand[: min(n, len(cand))]:
            labels[k] = 1
        match_of = [real[best[k]] for k in range(len(pri))]
    for k in range(len(pri)):
        if labels[k] == 0 and any(_iou(g, pri[k]) >= th[1] for g in ign):
            labels[k] = -1
    return labels, match_of


def oracle_loss(conf, loc, labels, loc_t, ratio=3):
    B, P = len(conf), len(conf[0])
    ll = lc = 0.0
    total_pos = 0
    for b in range(B):
        ce = []
        for k in range(P):
            z = conf[b][k]
            lse = math.log(math.exp(z[0]) + math.exp(z[1]))
            ce.append(lse - z[max(labels[b][k], 0)])
        pos = [k for k in range(P) if labels[b][k] == 1]
        total_pos += len(pos)
        for k in pos:
            lc += ce[k]
            for d in range(4):
                x = abs(loc[b][k][d] - loc_t[b][k][d])
                ll += 0.5 * x * x if x < 1 else x - 0.5
        negs = sorted((k for k in range(P) if labels[b][k] == 0), key=lambda k: (-ce[k], k))
        for k in negs[: min(ratio * len(pos), P - 1)]:
            lc += ce[k]
    norm = total_pos if total_pos else B
    return ll / norm, lc / norm, total_pos


# --------------------------------------------------------------------------- helpers


def grid_priors(n=4, step=10.0, side=10.0):
    """``n x n`` square priors of ``side`` px every ``step`` px, row-major."""
    return [((j + 0.5) * step, (i + 0.5) * step, side, side) for i in range(n) for j in range(n)]


def run_both(gts, ignore, priors):
    labels, matched = match(torch.tensor(gts, dtype=torch.float32).reshape(-1, 4), torch.tensor(ignore, dtype=torch.bool), torch.tensor(priors, dtype=torch.float32))
    o_labels, o_match = oracle_match(gts, ignore, priors)
    assert labels.tolist() == o_labels
    for k, lab in enumerate(o_labels):
        if lab == 1:
            assert matched[k].tolist() == pytest.approx(list(o_match[k]))
    return labels, matched


# --------------------------------------------------------------------------- matching


def test_iou_exactly_on_positive_threshold_is_positive():
    priors = [(5.0, 5.0, 10.0, 10.0), (50.0, 50.0, 10.0, 10.0)]
    # Face A overlaps prior 0 with IoU 35/100 = 0.35 exactly (positive: >= 0.35).
    labels, _ = run_both([[0.0, 0.0, 10.0, 3.5]], [False], priors)
    assert labels.tolist() == [1, 0]


def test_iou_exactly_on_low_threshold_is_not_a_candidate():
    # Face A (2x5) is best matched by a small prior (IoU 0.44, forced); the 10x10
    # prior containing it has IoU 10/100 = 0.1 exactly, which is NOT a candidate
    # (0.1 < IoU is strict), although face B makes N = (2 + 1) // 2 = 1.
    priors = [(1.0, 2.5, 4.0, 4.0), (5.0, 5.0, 10.0, 10.0), (100.0, 100.0, 10.0, 10.0)]
    gts = [[0.0, 0.0, 2.0, 5.0], [95.0, 95.0, 105.0, 105.0]]
    labels, _ = run_both(gts, [False, False], priors)
    assert _iou(gts[0], _corners(priors[1])) == 0.1
    assert labels.tolist() == [1, 0, 1]
    # Just above the threshold it is promoted.
    labels, _ = run_both([[0.0, 0.0, 2.0, 5.01], gts[1]], [False, False], priors)
    assert labels.tolist() == [1, 1, 1]


def test_scale_compensation_n_is_per_image():
    # Two faces matched with IoU 1 and a 6x5 face S whose best IoU is 0.3:
    # N = (#>=0.35: 2 + #>=0.5: 2) // 2 = 2.  S's best prior (p2) is forced; the
    # candidates are p3 (0.3), p6 (0.238), p4 (0.18): the image's top 2 are promoted.
    priors = [(5.0, 5.0, 10.0, 10.0), (25.0, 5.0, 10.0, 10.0), (53.0, 52.5, 10.0, 10.0), (54.0, 53.0, 10.0, 10.0), (57.0, 52.0, 10.0, 10.0), (60.0, 52.0, 10.0, 10.0), (56.0, 53.0, 10.0, 10.0)]
    gts = [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [50.0, 50.0, 56.0, 55.0]]
    labels, matched = run_both(gts, [False] * 3, priors)
    assert labels.tolist() == [1, 1, 1, 1, 0, 0, 1]
    assert matched[6].tolist() == gts[2]
    # With only S in the image, N = 0: no compensation at all.
    labels, _ = run_both(gts[2:], [False], priors)
    assert labels.tolist() == [0, 0, 1, 0, 0, 0, 0]


def test_forced_match_later_face_wins_shared_prior():
    priors = [(5.0, 5.0, 10.0, 10.0), (30.0, 30.0, 10.0, 10.0)]
    gts = [[0.0, 0.0, 4.0, 4.0], [6.0, 6.0, 10.0, 10.0]]  # both best on prior 0 (IoU 0.16 each)
    labels, matched = run_both(gts, [False, False], priors)
    assert labels.tolist() == [1, 0]
    assert matched[0].tolist() == gts[1]


def test_face_overlapping_no_prior_is_not_forced():
    labels, _ = run_both([[200.0, 200.0, 210.0, 210.0]], [False], grid_priors(2))
    assert labels.tolist() == [0, 0, 0, 0]


def test_ignored_faces_exclude_priors():
    priors = grid_priors(3)
    gts = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
    labels, _ = run_both(gts, [False, True], priors)
    assert labels[0] == 1 and labels[8] == -1 and (labels == 1).sum() == 1


def test_no_faces_all_background():
    labels, matched = run_both([], [], grid_priors(2))
    assert labels.tolist() == [0, 0, 0, 0]
    assert matched.shape == (4, 4)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_oracle(seed):
    g = torch.Generator().manual_seed(seed)
    priors = grid_priors(6, step=8.0, side=8.0) + grid_priors(3, step=16.0, side=24.0)
    n = int(torch.randint(0, 6, (1,), generator=g))
    xy = torch.rand(n, 2, generator=g) * 40
    wh = torch.rand(n, 2, generator=g) * 20 + 2
    gts = torch.cat([xy, xy + wh], 1).tolist()
    ignore = (torch.rand(n, generator=g) < 0.25).tolist()
    run_both(gts, ignore, priors)


def test_match_batch_encodes_targets():
    priors = torch.tensor(grid_priors(2), dtype=torch.float32)
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    labels, loc_t = match_batch([gt, torch.zeros(0, 4)], [None, None], priors)
    assert labels.shape == (2, 4) and loc_t.shape == (2, 4, 4)
    assert labels[0, 0] == 1 and loc_t[0, 0].abs().max() < 1e-6
    assert labels[1].sum() == 0 and torch.isfinite(loc_t).all()


# --------------------------------------------------------------------------- loss


def _random_loss_case(seed, B=3, P=12):
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(B, P, 2, generator=g) * 2
    loc = torch.randn(B, P, 4, generator=g)
    loc_t = torch.randn(B, P, 4, generator=g) * 1.5
    labels = torch.zeros(B, P, dtype=torch.int64)
    labels[0, [1, 5]] = 1
    labels[0, 7] = -1
    labels[1, 3] = 1  # 1 positive -> 3 negatives
    # image 2: no positives -> contributes nothing
    return conf, loc, labels, loc_t


@pytest.mark.parametrize("seed", range(4))
def test_loss_matches_oracle(seed):
    conf, loc, labels, loc_t = _random_loss_case(seed)
    ll, lc, npos = multibox_loss(conf, loc, labels, loc_t)
    oll, olc, onpos = oracle_loss(conf.tolist(), loc.tolist(), labels.tolist(), loc_t.tolist())
    assert npos == onpos == 3
    assert float(ll) == pytest.approx(oll, rel=1e-5)
    assert float(lc) == pytest.approx(olc, rel=1e-5)


def test_negative_count_capped_by_priors():
    # 1 positive among 3 priors: 3 * 1 = 3 negatives wanted, P - 1 = 2 allowed, 2 exist.
    conf = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]])
    labels = torch.tensor([[1, 0, 0]])
    loc = torch.zeros(1, 3, 4)
    ll, lc, npos = multibox_loss(conf, loc, labels, torch.zeros(1, 3, 4))
    oll, olc, _ = oracle_loss(conf.tolist(), loc.tolist(), labels.tolist(), [[[0.0] * 4] * 3])
    assert npos == 1 and float(lc) == pytest.approx(olc) and float(ll) == 0.0


def test_loss_without_positives_is_zero_and_normalised_by_batch():
    conf = torch.randn(2, 5, 2, requires_grad=True)
    ll, lc, npos = multibox_loss(conf, torch.zeros(2, 5, 4), torch.zeros(2, 5, dtype=torch.int64), torch.zeros(2, 5, 4))
    assert npos == 0 and float(ll.detach()) == 0.0 and float(lc.detach()) == 0.0
    (ll + lc).backward()  # still differentiable
