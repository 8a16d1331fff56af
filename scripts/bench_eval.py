#!/usr/bin/env python
"""Time `facedet evaluate wider` scoring on a synthetic WIDER-val-sized set.

Builds, in a temporary folder, official-format ground truth (61 events, 3,226
images, ~39,700 faces; easy/medium/hard subsets) and prediction files with
~100 boxes per image, then times :func:`facedet.evaluation.wider.evaluate_wider`
end to end (reading the .mat files, parsing 3,226 prediction files, scoring
the three subsets).  Target: under 30 s on a 2-core machine.

    python scripts/bench_eval.py [--images 3226] [--preds-per-image 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io


def _cell(items) -> np.ndarray:
    c = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        c[i, 0] = v
    return c


def build(root: Path, n_images: int, per_image: int, seed: int) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(seed)
    n_events = 61
    counts = np.full(n_events, n_images // n_events)
    counts[: n_images % n_events] += 1
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir()
    names, boxes, subsets = [], [], {s: [] for s in ("easy", "medium", "hard")}
    total_faces = 0
    for e, n in enumerate(counts):
        ev = f"{e}--Event{e}"
        (pred_dir / ev).mkdir(parents=True)
        ev_names, ev_boxes, ev_sub = [], [], {s: [] for s in subsets}
        for j in range(n):
            name = f"{e}_Event_{j}"
            m = int(rng.geometric(1 / 12.3))  # mean 12.3 faces per image
            total_faces += m
            wh = np.exp(rng.normal(3.0, 1.0, (m, 2))).clip(2, 400).round()
            xy = rng.uniform(0, 1000, (m, 2)).round()
            b = np.hstack([xy, wh])
            size = wh.min(axis=1)
            for s, lo in (("easy", 50), ("medium", 20), ("hard", 0)):
                ev_sub[s].append(np.nonzero(size >= lo)[0].astype(np.int32).reshape(-1, 1) + 1)
            ev_names.append(name)
            ev_boxes.append(b)
            # predictions: jittered faces (high scores) + background (low scores)
            k_true = min(m, per_image // 2)
            t = b[rng.permutation(m)[:k_true]] + rng.normal(0, 2, (k_true, 4))
            t[:, 2:] = np.maximum(t[:, 2:], 1)
            f = np.hstack([rng.uniform(0, 1000, (per_image - k_true, 2)), rng.uniform(5, 100, (per_image - k_true, 2))])
            rows = np.vstack([np.hstack([t, rng.uniform(0.3, 1, (k_true, 1))]), np.hstack([f, rng.uniform(0.01, 0.6, (len(f), 1))])])
            rows = rows[np.argsort(-rows[:, 4], kind="stable")]
            lines = [name, str(len(rows))] + [f"{r[0]:.1f} {r[1]:.1f} {r[2]:.1f} {r[3]:.1f} {r[4]:.3f}" for r in rows]
            (pred_dir / ev / f"{name}.txt").write_text("\n".join(lines) + "\n")
        names.append(ev)
        boxes.append(_cell(ev_boxes))
        for s in subsets:
            subsets[s].append(_cell(ev_sub[s]))
        ev_files = _cell(ev_names)
        boxes[-1] = (ev_files, boxes[-1])
    event_list = _cell(names)
    file_list = _cell([b[0] for b in boxes])
    bbx = _cell([b[1] for b in boxes])
    scipy.io.savemat(str(gt_dir / "wider_face_val.mat"), {"event_list": event_list, "file_list": file_list, "face_bbx_list": bbx})
    for s, lst in subsets.items():
        scipy.io.savemat(str(gt_dir / f"wider_{s}_val.mat"), {"event_list": event_list, "file_list": file_list, "gt_list": _cell(lst)})
    return gt_dir, pred_dir, total_faces


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3226)
    ap.add_argument("--preds-per-image", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from facedet.evaluation.wider import evaluate_wider, evaluate_wider_arrays, load_wider_gt, load_wider_predictions

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gt_dir, pred_dir, faces = build(Path(tmp), args.images, args.preds_per_image, args.seed)
        t_build = time.perf_counter() - t0
        print(f"synthetic set: {args.images} images, {faces} faces, {args.preds_per_image} predictions/image (built in {t_build:.1f} s)")

        t0 = time.perf_counter()
        gt = load_wider_gt(gt_dir)
        t1 = time.perf_counter()
        preds, _ = load_wider_predictions(pred_dir, gt)
        t2 = time.perf_counter()
        res = evaluate_wider_arrays(preds, gt)
        t3 = time.perf_counter()
        print(f"  read ground truth  {t1 - t0:6.2f} s")
        print(f"  read predictions   {t2 - t1:6.2f} s")
        print(f"  score 3 subsets    {t3 - t2:6.2f} s")

        t0 = time.perf_counter()
        res = evaluate_wider(pred_dir, gt_dir)
        total = time.perf_counter() - t0
        print(f"AP easy {res.ap['easy']:.4f}  medium {res.ap['medium']:.4f}  hard {res.ap['hard']:.4f}")
        print(f"evaluate_wider end to end: {total:.2f} s (target < 30 s)")
    return 0 if total < 30 else 1


if __name__ == "__main__":
    sys.exit(main())
