"""Fixture writers in the official WIDER FACE formats, a slow oracle of the
reference Python port (wondervictor/WiderFace-Evaluation), and tests of both.

The oracle is a deliberately literal, loop-based restatement of the port's
algorithm, reading the ``.mat`` files with the same indexing the port uses
(``event_list[i][0][0]``, ``file_list[i][0][j][0][0]`` ...), so it also checks
that our fixtures have the structure of the real files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io

SUBSETS = ("easy", "medium", "hard")


# --------------------------------------------------------------------------- writers


def _cell(items) -> np.ndarray:
    """A MATLAB N x 1 cell array."""
    c = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        c[i, 0] = v
    return c


def write_wider_gt(gt_dir: Path, events: dict) -> Path:
    """Write the four official ground-truth files.

    Args:
        events: ``{event: [(name, boxes xywh [M, 4], {subset: 1-based indices}), ...]}``.
    """
    gt_dir = Path(gt_dir)
    gt_dir.mkdir(parents=True, exist_ok=True)
    names = list(events)
    event_list = _cell(names)
    file_list = _cell([_cell([img[0] for img in events[e]]) for e in names])
    bbx = _cell([_cell([np.asarray(img[1], dtype=np.float64).reshape(-1, 4) for img in events[e]]) for e in names])
    scipy.io.savemat(str(gt_dir / "wider_face_val.mat"), {"event_list": event_list, "file_list": file_list, "face_bbx_list": bbx})
    for s in SUBSETS:
        gl = _cell([_cell([np.asarray(img[2].get(s, []), dtype=np.int32).reshape(-1, 1) for img in events[e]]) for e in names])
        scipy.io.savemat(str(gt_dir / f"wider_{s}_val.mat"), {"event_list": event_list, "file_list": file_list, "gt_list": gl})
    return gt_dir


def pred_text(name: str, rows) -> str:
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    lines = [name, str(len(rows))] + [f"{r[0]:.1f} {r[1]:.1f} {r[2]:.1f} {r[3]:.1f} {r[4]:.3f}" for r in rows]
    return "\n".join(lines) + "\n"


def write_preds(pred_dir: Path, preds: dict) -> Path:
    """``preds``: ``{(event, name): rows [N, 5] x y w h score}``, written in the given order."""
    for (event, name), rows in preds.items():
        d = Path(pred_dir) / event
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.txt").write_text(pred_text(name, rows))
    return Path(pred_dir)


def random_set(seed: int, n_events: int = 3, n_images: int = 8, sort: bool = True):
    """A random ground truth + predictions with every edge case mixed in.

    Predictions are jittered copies of faces (some exactly on IoU 0.5), random
    boxes, duplicates, scores with 3 decimals (many ties).  Some images have no
    face, some no prediction file, some a file with count 0; some images have
    every face ignored in a subset.
    """
    rng = np.random.default_rng(seed)
    events, preds = {}, {}
    for e in range(n_events):
        ev = f"{e}--Event{e}"
        imgs = []
        for j in range(n_images):
            name = f"{e}_Event_{j}"
            kind = rng.integers(0, 10)
            m = 0 if kind == 0 else int(rng.integers(1, 12))
            xy = rng.integers(0, 400, size=(m, 2)).astype(float)
            wh = rng.integers(2, 80, size=(m, 2)).astype(float)
            boxes = np.hstack([xy, wh])
            keep = {}
            for s, frac in zip(SUBSETS, (0.3, 0.6, 0.9)):
                mask = rng.random(m) < frac
                if kind == 1:
                    mask[:] = False  # all faces ignored in every subset
                keep[s] = np.nonzero(mask)[0] + 1
            imgs.append((name, boxes, keep))
            if kind == 2:
                continue  # no prediction file
            rows = []
            if kind != 3:  # kind 3: a file with count 0
                for b in boxes:
                    for _ in range(int(rng.integers(0, 3))):
                        jit = b + np.round(rng.normal(0, 0.07 * max(b[2], 1), 4))
                        jit[2:] = np.maximum(jit[2:], 0)
                        rows.append([*jit, 0.3 + 0.7 * rng.random()])  # true faces tend to score higher
                    if rng.random() < 0.2:  # exactly IoU 0.5 under +1: half the height (+1)
                        h2 = (b[3] + 1) / 2 - 1
                        if h2 >= 0:
                            rows.append([b[0], b[1], b[2], h2, rng.random()])
                for _ in range(int(rng.integers(0, 6))):
                    rows.append([*rng.integers(0, 400, 2), *rng.integers(1, 60, 2), 0.7 * rng.random()])
            rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
            rows[:, :4] = np.round(rows[:, :4], 1)
            rows[:, 4] = np.round(rows[:, 4] * 20) / 20 if rng.random() < 0.5 else np.round(rows[:, 4], 3)  # ties
            if sort:
                rows = rows[np.argsort(-rows[:, 4], kind="stable")]
            preds[(ev, name)] = rows
        events[ev] = imgs
    return events, preds


# --------------------------------------------------------------------------- slow oracle of the reference port


def oracle_overlaps(boxes, query):
    n, k = len(boxes), len(query)
    out = np.zeros((n, k))
    for kk in range(k):
        qa = (query[kk, 2] - query[kk, 0] + 1) * (query[kk, 3] - query[kk, 1] + 1)
        for nn in range(n):
            iw = min(boxes[nn, 2], query[kk, 2]) - max(boxes[nn, 0], query[kk, 0]) + 1
            if iw > 0:
                ih = min(boxes[nn, 3], query[kk, 3]) - max(boxes[nn, 1], query[kk, 1]) + 1
                if ih > 0:
                    ua = (boxes[nn, 2] - boxes[nn, 0] + 1) * (boxes[nn, 3] - boxes[nn, 1] + 1) + qa - iw * ih
                    out[nn, kk] = iw * ih / ua
    return out


def oracle_read_preds(pred_dir):
    """Like the port: every event folder, every file; key = line-1 name minus '.jpg'."""
    out = {}
    for event in os.listdir(pred_dir):
        cur = {}
        for fn in os.listdir(os.path.join(pred_dir, event)):
            with open(os.path.join(pred_dir, event, fn)) as f:
                lines = f.readlines()
            name = lines[0].rstrip("\r\n").split("/")[-1]
            if name.endswith(".jpg"):
                name = name[:-4]
            rows = [[float(a) for a in ln.rstrip("\r\n").split(" ")] for ln in lines[2:]]
            cur[name] = np.array(rows, dtype=float).reshape(-1, 5) if rows else np.array(rows, dtype=float)
        out[event] = cur
    return out


def oracle_evaluation(pred_dir, gt_dir, iou_thresh=0.5):
    """The reference port, restated with explicit loops. Returns [easy, medium, hard]."""
    pred = oracle_read_preds(pred_dir)
    # norm_score
    max_score, min_score = 0.0, 1.0
    for ev in pred.values():
        for v in ev.values():
            if len(v) == 0:
                continue
            max_score = max(np.max(v[:, -1]), max_score)
            min_score = min(np.min(v[:, -1]), min_score)
    diff = max_score - min_score
    for ev in pred.values():
        for v in ev.values():
            if len(v) == 0:
                continue
            v[:, -1] = (v[:, -1] - min_score) / diff

    gt_mat = scipy.io.loadmat(os.path.join(gt_dir, "wider_face_val.mat"))
    sub = {s: scipy.io.loadmat(os.path.join(gt_dir, f"wider_{s}_val.mat"))["gt_list"] for s in SUBSETS}
    facebox_list, event_list, file_list = gt_mat["face_bbx_list"], gt_mat["event_list"], gt_mat["file_list"]
    thresh_num = 1000
    aps = []
    for s in SUBSETS:
        gt_list = sub[s]
        count_face = 0
        pr_curve = np.zeros((thresh_num, 2))
        for i in range(len(event_list)):
            event_name = str(event_list[i][0][0])
            img_list = file_list[i][0]
            pred_list = pred.get(event_name, {})
            sub_gt_list = gt_list[i][0]
            gt_bbx_list = facebox_list[i][0]
            for j in range(len(img_list)):
                pred_info = pred_list.get(str(img_list[j][0][0]), np.zeros((0, 5)))
                gt_boxes = gt_bbx_list[j][0].astype("float")
                keep_index = sub_gt_list[j][0]
                count_face += len(keep_index)
                if len(gt_boxes) == 0 or len(pred_info) == 0:
                    continue
                ignore = np.zeros(gt_boxes.shape[0])
                if len(keep_index) != 0:
                    ignore[keep_index - 1] = 1
                # image_eval
                _pred, _gt = pred_info.copy(), gt_boxes.copy()
                pred_recall = np.zeros(_pred.shape[0])
                recall_list = np.zeros(_gt.shape[0])
                proposal_list = np.ones(_pred.shape[0])
                _pred[:, 2] = _pred[:, 2] + _pred[:, 0]
                _pred[:, 3] = _pred[:, 3] + _pred[:, 1]
                _gt[:, 2] = _gt[:, 2] + _gt[:, 0]
                _gt[:, 3] = _gt[:, 3] + _gt[:, 1]
                overlaps = oracle_overlaps(_pred[:, :4], _gt)
                for h in range(_pred.shape[0]):
                    row = overlaps[h]
                    max_overlap, max_idx = row.max(), row.argmax()
                    if max_overlap >= iou_thresh:
                        if ignore[max_idx] == 0:
                            recall_list[max_idx] = -1
                            proposal_list[h] = -1
                        elif recall_list[max_idx] == 0:
                            recall_list[max_idx] = 1
                    pred_recall[h] = len(np.where(recall_list == 1)[0])
                # img_pr_info
                for t in range(thresh_num):
                    thresh = 1 - (t + 1) / thresh_num
                    r_index = np.where(pred_info[:, 4] >= thresh)[0]
                    if len(r_index) == 0:
                        continue
                    r_index = r_index[-1]
                    pr_curve[t, 0] += len(np.where(proposal_list[: r_index + 1] == 1)[0])
                    pr_curve[t, 1] += pred_recall[r_index]
        # dataset_pr_info
        curve = np.zeros((thresh_num, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in range(thresh_num):
                curve[t, 0] = pr_curve[t, 1] / pr_curve[t, 0]
                curve[t, 1] = pr_curve[t, 1] / count_face
        # voc_ap
        rec, prec = curve[:, 1], curve[:, 0]
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for k in range(mpre.size - 1, 0, -1):
            mpre[k - 1] = np.maximum(mpre[k - 1], mpre[k])
        idx = np.where(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])))
    return aps


# --------------------------------------------------------------------------- tests of the fixtures themselves


def test_mat_fixture_has_official_structure(tmp_path):
    events = {"0--Parade": [("0_Parade_1", [[1, 2, 3, 4], [5, 6, 7, 8]], {"easy": [2], "medium": [1, 2]}), ("0_Parade_2", np.zeros((0, 4)), {})]}
    write_wider_gt(tmp_path, events)
    m = scipy.io.loadmat(str(tmp_path / "wider_face_val.mat"))
    assert m["event_list"].dtype == object and m["event_list"].shape == (1, 1)
    assert str(m["event_list"][0][0][0]) == "0--Parade"
    assert str(m["file_list"][0][0][1][0][0]) == "0_Parade_2"
    assert m["face_bbx_list"][0][0][0][0].shape == (2, 4)
    assert len(m["face_bbx_list"][0][0][1][0]) == 0
    e = scipy.io.loadmat(str(tmp_path / "wider_easy_val.mat"))["gt_list"]
    assert e[0][0][0][0].reshape(-1).tolist() == [2] and e[0][0][0][0].dtype.kind == "i"
    assert len(e[0][0][1][0]) == 0


def test_oracle_overlaps_plus_one_convention():
    # [0, 9] is 10 pixels wide with +1: identical boxes have IoU 1, half-height boxes 0.5.
    o = oracle_overlaps(np.array([[0.0, 0, 9, 9], [0, 0, 9, 4]]), np.array([[0.0, 0, 9, 9]]))
    assert o[0, 0] == 1.0 and o[1, 0] == 0.5
