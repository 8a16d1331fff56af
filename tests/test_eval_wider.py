"""The WIDER FACE protocol against a slow oracle of the reference port, hand-computed cases and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from facedet.errors import FacedetError
from facedet.evaluation.wider import (
    THRESH_NUM,
    evaluate_wider,
    evaluate_wider_arrays,
    load_wider_gt,
    normalise_scores,
    parse_wider_pred_text,
    voc_ap,
    wider_iou,
)

try:
    from test_eval_fixtures import oracle_evaluation, oracle_overlaps, random_set, write_preds, write_wider_gt
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.test_eval_fixtures import oracle_evaluation, oracle_overlaps, random_set, write_preds, write_wider_gt


def _aps(res):
    return [res.ap[s] for s in ("easy", "medium", "hard")]


# --------------------------------------------------------------------------- equality with the reference port


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_port_on_random_sets(tmp_path, seed):
    events, preds = random_set(seed)
    gt_dir = write_wider_gt(tmp_path / "gt", events)
    pred_dir = write_preds(tmp_path / "pred", preds)
    expected = oracle_evaluation(pred_dir, gt_dir)
    got = _aps(evaluate_wider(pred_dir, gt_dir))
    assert np.all(np.isfinite(expected))
    assert got == pytest.approx(expected, abs=1e-4)
    assert got == pytest.approx(expected, abs=1e-12)  # in fact the same arithmetic
    assert all(0 <= a <= 1 for a in got)


def test_random_sets_cover_the_edge_cases():
    # Guard against the generator silently losing its edge cases.
    events, preds = random_set(0)
    imgs = [(ev, im) for ev, lst in events.items() for im in lst]
    assert any(len(im[1]) == 0 for _, im in imgs)  # image without faces
    assert any((ev, im[0]) not in preds for ev, im in imgs)  # no prediction file
    assert any(len(v) == 0 for v in preds.values())  # count-0 file
    assert any(len(im[1]) and all(len(im[2][s]) == 0 for s in im[2]) for _, im in imgs)  # all faces ignored
    assert any(len(v) != len(np.unique(v[:, 4])) for v in preds.values())  # ties


def test_order_of_prediction_lines_does_not_matter(tmp_path):
    """We sort by score (like the MATLAB read_pred); the port assumes sorted files."""
    events, preds = random_set(11)
    gt_dir = write_wider_gt(tmp_path / "gt", events)
    rng = np.random.default_rng(0)
    shuffled = {k: v[rng.permutation(len(v))] for k, v in preds.items()}
    a = _aps(evaluate_wider(write_preds(tmp_path / "p1", preds), gt_dir))
    b = _aps(evaluate_wider(write_preds(tmp_path / "p2", shuffled), gt_dir))
    assert a == b == pytest.approx(oracle_evaluation(tmp_path / "p1", gt_dir), abs=1e-12)


# --------------------------------------------------------------------------- hand-computed cases


def _hand_case(tmp_path, extra_images=()):
    # Faces A at (0,0) and B at (100,100), both 10x10 pixels under +1 (w = h = 9).
    events = {
        "0--E": [("img_a", [[0, 0, 9, 9], [100, 100, 9, 9]], {"easy": [1, 2], "medium": [1], "hard": [2]})] + list(extra_images),
    }
    preds = {("0--E", "img_a"): [[0, 0, 9, 9, 1.0], [300, 300, 9, 9, 0.5], [100, 100, 9, 9, 0.0]]}
    return write_wider_gt(tmp_path / "gt", events), preds


def test_hand_computed_ap(tmp_path):
    gt_dir, preds = _hand_case(tmp_path)
    pred_dir = write_preds(tmp_path / "pred", preds)
    res = evaluate_wider(pred_dir, gt_dir)
    # easy: P/R = 1/0.5 for t > 0.5, 0.5/0.5 for 0 < t <= 0.5, 2/3 / 1 at t = 0
    #   -> AP = 0.5 * 1 + 0.5 * 2/3
    assert res.ap["easy"] == pytest.approx(0.5 + 1 / 3, abs=1e-12)
    # medium (B ignored): the prediction on B is not a proposal; recall 1 from the top one -> AP 1
    assert res.ap["medium"] == pytest.approx(1.0, abs=1e-12)
    # hard (A ignored): recall reaches 1 only at t = 0 with precision 1/2
    assert res.ap["hard"] == pytest.approx(0.5, abs=1e-12)
    assert res.faces == {"easy": 2, "medium": 1, "hard": 1}
    # PR curve: 1000 thresholds, first 499 at precision 1 for easy
    assert len(res.precision["easy"]) == THRESH_NUM
    assert res.thresholds[0] == pytest.approx(0.999) and res.thresholds[-1] == 0.0
    assert res.precision["easy"][0] == 1.0 and res.recall["easy"][0] == 0.5
    assert res.precision["easy"][499] == 0.5  # t = 0.5: the 0.5 prediction passes (>=)
    assert np.isnan(res.precision["hard"][0])  # no proposal yet
    assert _aps(res) == pytest.approx(oracle_evaluation(pred_dir, gt_dir), abs=1e-12)


def test_images_without_faces_do_not_count_false_positives(tmp_path):
    """Official quirk: predictions on an image without any face are skipped."""
    gt_dir, preds = _hand_case(tmp_path, extra_images=[("img_empty", np.zeros((0, 4)), {})])
    preds[("0--E", "img_empty")] = [[5, 5, 20, 20, 0.9]]
    pred_dir = write_preds(tmp_path / "pred", preds)
    res = evaluate_wider(pred_dir, gt_dir)
    assert res.ap["easy"] == pytest.approx(0.5 + 1 / 3, abs=1e-12)
    assert _aps(res) == pytest.approx(oracle_evaluation(pred_dir, gt_dir), abs=1e-12)


def test_missing_prediction_file_counts_faces_as_missed(tmp_path):
    gt_dir, preds = _hand_case(tmp_path, extra_images=[("img_b", [[0, 0, 9, 9], [20, 20, 9, 9]], {"easy": [1, 2]})])
    pred_dir = write_preds(tmp_path / "pred", preds)
    calls = []
    res = evaluate_wider(pred_dir, gt_dir, on_missing=lambda n, t: calls.append((n, t)))
    assert calls == [(1, 2)] and res.missing == 1
    assert res.faces["easy"] == 4
    # recall halves: 0.25 * 1 + 0.25 * 2/3
    assert res.ap["easy"] == pytest.approx(0.25 + 0.5 / 3, abs=1e-12)
    assert _aps(res) == pytest.approx(oracle_evaluation(pred_dir, gt_dir), abs=1e-12)


def test_all_faces_ignored_in_a_subset(tmp_path):
    events = {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1], "medium": [1]}), ("b", [[0, 0, 9, 9], [50, 50, 9, 9]], {"easy": [1]})]}
    gt_dir = write_wider_gt(tmp_path / "gt", events)
    preds = {("0--E", "a"): [[0, 0, 9, 9, 0.9]], ("0--E", "b"): [[0, 0, 9, 9, 0.8], [50, 50, 9, 9, 0.7], [200, 0, 9, 9, 0.6]]}
    pred_dir = write_preds(tmp_path / "pred", preds)
    res = evaluate_wider(pred_dir, gt_dir)
    expected = oracle_evaluation(pred_dir, gt_dir)
    assert [res.ap["easy"], res.ap["medium"]] == pytest.approx(expected[:2], abs=1e-12)
    # hard has no face at all: the port divides 0 by 0 (NaN); we report 0
    assert np.isnan(expected[2]) and res.ap["hard"] == 0.0 and res.faces["hard"] == 0


def test_iou_exactly_half_under_plus_one_convention_matches(tmp_path):
    # Face 10x10 (w = h = 9); prediction 10x5 (h = 4): 50 / 100 = 0.5 exactly -> a match.
    # Without the +1 the IoU would be 9*4 / 81 = 0.444 (no match).
    assert wider_iou(np.array([[0.0, 0, 9, 4]]), np.array([[0.0, 0, 9, 9]]))[0, 0] == 0.5
    assert wider_iou(np.array([[0.0, 0, 9, 3.9]]), np.array([[0.0, 0, 9, 9]]))[0, 0] < 0.5
    # image b has no face: its prediction only widens the score range (a single score would be 0/0)
    events = {"0--E": [("a", [[0, 0, 9, 9]], {s: [1] for s in ("easy", "medium", "hard")}), ("b", np.zeros((0, 4)), {})]}
    gt_dir = write_wider_gt(tmp_path / "gt", events)
    b = {("0--E", "b"): [[0, 0, 5, 5, 0.1]]}
    on = evaluate_wider(write_preds(tmp_path / "on", {("0--E", "a"): [[0, 0, 9, 4, 0.9]], **b}), gt_dir)
    below = evaluate_wider(write_preds(tmp_path / "below", {("0--E", "a"): [[0, 0, 9, 3.9, 0.9]], **b}), gt_dir)
    assert on.ap["easy"] == 1.0 and below.ap["easy"] == 0.0
    assert _aps(on) == pytest.approx(oracle_evaluation(tmp_path / "on", gt_dir), abs=1e-12)
    assert _aps(below) == pytest.approx(oracle_evaluation(tmp_path / "below", gt_dir), abs=1e-12)


def test_duplicate_detections_are_false_positives_and_ties(tmp_path):
    events = {"0--E": [("a", [[0, 0, 9, 9], [40, 0, 9, 9]], {s: [1, 2] for s in ("easy", "medium", "hard")})]}
    gt_dir = write_wider_gt(tmp_path / "gt", events)
    # all three tied at the top: duplicate on face 1 counts as a proposal without recall
    preds = {("0--E", "a"): [[0, 0, 9, 9, 0.8], [0, 0, 9, 9, 0.8], [40, 0, 9, 9, 0.8], [90, 0, 9, 9, 0.2]]}
    pred_dir = write_preds(tmp_path / "pred", preds)
    res = evaluate_wider(pred_dir, gt_dir)
    # normalised: 0.8 -> (0.8-0.2)/0.6 = 1; recall 1 with precision 2/3 from the first threshold
    assert res.ap["easy"] == pytest.approx(2 / 3, abs=1e-12)
    assert _aps(res) == pytest.approx(oracle_evaluation(pred_dir, gt_dir), abs=1e-12)


def test_score_normalisation_like_the_official_code():
    p = {("e", "a"): np.array([[0, 0, 1, 1, 0.2], [0, 0, 1, 1, 0.6]]), ("e", "b"): np.zeros((0, 5))}
    n = normalise_scores(p)
    # range starts at [1, 0]: min = 0.2, max = 0.6
    assert n[("e", "a")][:, 4] == pytest.approx([0.0, 1.0])
    assert p[("e", "a")][0, 4] == 0.2  # input untouched
    # scores above 1 (e.g. logits) keep min <= 1
    n = normalise_scores({("e", "a"): np.array([[0, 0, 1, 1, 3.0], [0, 0, 1, 1, 5.0]])})
    assert n[("e", "a")][:, 4] == pytest.approx([0.5, 1.0])
    # degenerate range (all scores 1): documented choice, every score becomes 1
    n = normalise_scores({("e", "a"): np.array([[0, 0, 1, 1, 1.0]])})
    assert n[("e", "a")][:, 4].tolist() == [1.0]


def test_vectorised_iou_equals_loop():
    rng = np.random.default_rng(3)
    p = np.round(rng.uniform(0, 50, (40, 4)), 1)
    g = np.round(rng.uniform(0, 50, (7, 4)), 1)
    pp, gg = p.copy(), g.copy()
    pp[:, 2:] += pp[:, :2]
    gg[:, 2:] += gg[:, :2]
    assert np.array_equal(wider_iou(p, g), oracle_overlaps(pp, gg))


def test_voc_ap_envelope():
    # precision 0.5 then 1 at higher recall: the envelope lifts the first segment to 1
    assert voc_ap(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == 1.0
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == 0.75
    assert voc_ap(np.array([0.0, 0.5]), np.array([np.nan, 1.0])) == 0.5


def test_in_memory_api_rejects_unknown_images(tmp_path):
    gt = load_wider_gt(write_wider_gt(tmp_path, {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1]})]}))
    with pytest.raises(FacedetError, match="0--E/zzz"):
        evaluate_wider_arrays({("0--E", "zzz"): np.zeros((0, 5))}, gt)


# --------------------------------------------------------------------------- bad input


def test_missing_and_malformed_mat_files(tmp_path):
    with pytest.raises(FacedetError, match="not found"):
        load_wider_gt(tmp_path / "nope")
    gt_dir = write_wider_gt(tmp_path / "gt", {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1]})]})
    (gt_dir / "wider_hard_val.mat").unlink()
    with pytest.raises(FacedetError, match="wider_hard_val.mat"):
        load_wider_gt(gt_dir)
    (gt_dir / "wider_hard_val.mat").write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(FacedetError, match="wider_hard_val.mat.*not a readable"):
        load_wider_gt(gt_dir)
    import scipy.io

    scipy.io.savemat(str(gt_dir / "wider_face_val.mat"), {"event_list": np.zeros(3)})
    with pytest.raises(FacedetError, match="wider_face_val.mat.*(file_list|cell)"):
        load_wider_gt(gt_dir)


def test_subset_index_out_of_range(tmp_path):
    gt_dir = write_wider_gt(tmp_path, {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [2]})]})
    with pytest.raises(FacedetError, match=r"wider_easy_val.mat: gt_list\{1\}\{1\}"):
        load_wider_gt(gt_dir)


@pytest.mark.parametrize(
    "text, where",
    [
        ("a\n2\n1 2 3 4 0.5\n", "f.txt:2"),  # count says 2, one line
        ("a\nthree\n", "f.txt:2"),
        ("a\n", "f.txt:2"),
        ("", "f.txt:1"),
        ("a\n2\n1 2 3 4 0.5\n1 2 x 4 0.5\n", "f.txt:4"),
        ("a\n1\n1 2 3 4\n", "f.txt:3"),
        ("a\n1\n1 2 3 4 nan\n", "f.txt:3"),
        ("a\n1\n1 2 -3 4 0.5\n", "f.txt:3"),
    ],
)
def test_malformed_prediction_file_names_file_and_line(text, where):
    with pytest.raises(FacedetError, match=where):
        parse_wider_pred_text(text, "f.txt")


def test_prediction_file_tolerates_trailing_blank_lines_and_tabs():
    a = parse_wider_pred_text("img.jpg\n2\n1 2 3 4 0.5\n5\t6 7 8 0.25\n\n\n", "f.txt")
    assert a.tolist() == [[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]]
    assert parse_wider_pred_text("img\n0\n", "f.txt").shape == (0, 5)


def test_prediction_dir_errors(tmp_path):
    gt_dir = write_wider_gt(tmp_path / "gt", {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1]})]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacedetError, match="no prediction files"):
        evaluate_wider(tmp_path / "empty", gt_dir)
    write_preds(tmp_path / "extra", {("0--E", "a"): [[0, 0, 9, 9, 0.5]], ("0--E", "stranger"): [[0, 0, 9, 9, 0.5]]})
    with pytest.raises(FacedetError, match="stranger.txt.*not in the ground truth"):
        evaluate_wider(tmp_path / "extra", gt_dir)
    write_preds(tmp_path / "bad", {("0--E", "a"): [[0, 0, 9, 9, 0.5]]})
    (tmp_path / "bad" / "0--E" / "a.txt").write_text("a\n1\n0 0 9 nine 0.5\n")
    with pytest.raises(FacedetError, match=r"a.txt:3: field 4 'nine'"):
        evaluate_wider(tmp_path / "bad", gt_dir)
