#!/usr/bin/env python3
"""The firmware's targets, measured: bit-exactness, RAM, executed instructions, flash, accuracy.

Exports the shipped integer model (or ``--weights``) to a temporary bundle,
builds it for the host and for the Cortex-M4, runs every image through the
QEMU build, the host build and the Python integer interpreter, and prints:

* **bit-exact**: images whose raw int8 outputs are identical in all three;
* **RAM**: arena + stack high-water mark + ``.data`` + ``.bss`` (+ handler
  stack), from the m4 build's sections and the stack painting;
* **work**: executed instructions per 240x320 frame (QEMU ``-icount``), with
  a per-stage table;
* **flash**: ``.vectors + .text + .rodata + .ARM.exidx + .data``;
* **accuracy** on the held-out validation photos (``data/offline/val.json``,
  if built): AP@0.5 and AP@[.5:.95] of ``firmware run`` against ``facedet
  detect --weights Q --single-scale`` on the same photos, and for photos with
  the firmware's aspect ratio the largest box and score difference.

    python scripts/bench_firmware.py
    python scripts/bench_firmware.py --images tests/data --no-val
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facedet.firmware.export import export_firmware  # noqa: E402
from facedet.firmware.run import run_firmware  # noqa: E402
from facedet.imageio import collect_inputs, read_image  # noqa: E402
from facedet.inference import Detector  # noqa: E402

TARGETS = {"ram": 128 * 1024, "flash": 256 * 1024, "instructions": 300_000_000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="quantized model (default: the shipped one)")
    ap.add_argument("--images", type=Path, nargs="*", default=[ROOT / "tests" / "data"], help="images or folders for the bit-exact and work rows")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "offline", help="dataset root with val.json for the accuracy rows")
    ap.add_argument("--no-val", action="store_true", help="skip the accuracy rows")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="facedet-bench-fw-") as tmp:
        bundle = Path(tmp) / "bundle"
        t = time.perf_counter()
        rep = export_firmware(args.weights, bundle)
        print(f"exported {rep.arch} at {rep.height}x{rep.width} in {time.perf_counter() - t:.1f} s (arena {rep.plan.arena_bytes:,} B, peak at {rep.plan.peak_stage.name})")
        images = collect_inputs(list(args.images))
        m4 = run_firmware(bundle, images, target="m4", check=True)
        host = run_firmware(bundle, images, target="host", check=True)
        exact = sum(a["bit_exact"] and b["bit_exact"] and a["faces"] == b["faces"] for a, b in zip(m4.records, host.records))
        print(f"\nbit-exact (QEMU m4 == host build == Python interpreter, every raw output value): {exact} of {len(images)} images")
        mem = m4.memory
        print(f"RAM: {mem['ram_bytes']:,} B = stack high-water {mem['stack_bytes']:,} + .data {mem['sections'].get('.data', 0):,} + .bss {mem['sections'].get('.bss', 0):,} "
              f"(arena {mem['arena_bytes']:,}, result {mem['result_bytes']:,}) + handler stack {mem['sections'].get('.stack_msp', 0):,}; "
              f"target <= {TARGETS['ram']:,}: {'met' if mem['ram_bytes'] <= TARGETS['ram'] else 'NOT met'}")
        print(f"flash: {mem['flash_bytes']:,} B (.text {mem['sections'].get('.text', 0):,}, .rodata {mem['sections'].get('.rodata', 0):,}); "
              f"target <= {TARGETS['flash']:,}: {'met' if mem['flash_bytes'] <= TARGETS['flash'] else 'NOT met'}")
        instr = [r["instructions"] for r in m4.records]
        med = int(statistics.median(instr))
        print(f"work: {med:,} instructions per frame (median of {len(instr)}; min {min(instr):,}, max {max(instr):,}); "
              f"target <= {TARGETS['instructions']:,}: {'met' if med <= TARGETS['instructions'] else 'NOT met'}")
        print(f"QEMU wall time per frame: {statistics.median(r['wall_s'] for r in m4.records):.2f} s (median)")
        print(f"\n{'stage':<14} {'kind':<12} {'instructions':>14} {'share':>7}")
        stages = np.median(np.array([r["stages"] for r in m4.records]), axis=0)
        for s, n in zip(mem["stages"], stages):
            print(f"{s['name']:<14} {s['kind']:<12} {int(n):>14,} {100 * n / med:>6.1f}%")
        if not args.no_val and (args.data / "val.json").is_file():
            _accuracy(bundle, args.data)


def _accuracy(bundle: Path, root: Path) -> None:
    from facedet.data.generic import read_generic
    from facedet.evaluation.folder import evaluate_folder

    annotations = read_generic(root / "val.json")
    files = [root / a.file for a in annotations]
    fw = run_firmware(bundle, files, target="m4", score_threshold=0.01, check=True)
    qdet = Detector.load(bundle / "model.safetensors")
    preds_fw, preds_py = {}, {}
    box_diff, score_diff, same_shape = 0.0, 0.0, 0
    for a, rec in zip(annotations, fw.records):
        boxes = np.array([f["box"] for f in rec["faces"]], np.float32).reshape(-1, 4)
        scores = np.array([f["score"] for f in rec["faces"]], np.float32)
        preds_fw[a.file] = (boxes, scores)
        d = qdet.detect(read_image(root / a.file), threshold=0.01, pyramid=False, max_faces=64)
        preds_py[a.file] = (d.boxes, d.scores)
        if rec["fit"] == "resize":
            same_shape += 1
            n = min(len(d), len(scores), 10)
            if n:
                box_diff = max(box_diff, float(np.abs(boxes[:n] - d.boxes[:n]).max()))
                score_diff = max(score_diff, float(np.abs(scores[:n] - d.scores[:n]).max()))
    r_fw = evaluate_folder(annotations, preds_fw, threshold=0.5)
    r_py = evaluate_folder(annotations, preds_py, threshold=0.5)
    exact = sum(r["bit_exact"] for r in fw.records)
    print(f"\nbit-exact on the validation photos (QEMU m4 == Python interpreter): {exact} of {len(fw.records)}")
    print(f"accuracy on {len(annotations)} held-out validation photos ({root / 'val.json'}), score threshold 0.01, 64 faces at most:")
    print(f"  facedet firmware run (m4):                 AP@0.5 {r_fw.ap50:.3f}  AP@[.5:.95] {r_fw.ap50_95:.3f}")
    print(f"  facedet detect --weights Q --single-scale: AP@0.5 {r_py.ap50:.3f}  AP@[.5:.95] {r_py.ap50_95:.3f}")
    print(f"  difference: {r_fw.ap50 - r_py.ap50:+.3f} / {r_fw.ap50_95 - r_py.ap50_95:+.3f} (target: within 0.02)")
    print(f"  photos with the firmware's aspect ratio: {same_shape}; top-10 boxes differ by at most {box_diff:.3f} px, scores by {score_diff:.2e}")


if __name__ == "__main__":
    main()
