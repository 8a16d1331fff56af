"""Precision-recall figures in the style of the official WIDER FACE plots.

Matplotlib with the Agg backend (no display needed).  One axes, recall on x,
precision on y, both [0, 1], a grid, thick lines, and the AP of each curve in
the legend (``easy: 0.912``), like the official ``eval_tools`` figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from facedet.errors import FacedetError

__all__ = ["plot_pr_curves", "plot_wider_result", "plot_folder_result"]

_COLORS = {"easy": "#1f77b4", "medium": "#2ca02c", "hard": "#d62728"}


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path, *, title: str = "Precision-Recall", label: str = "facedet") -> None:
    """Write a PNG with one precision-recall curve per entry.

    Args:
        curves: name -> ``(recall float[K], precision float[K], ap)``; NaN
            precision points (no proposal yet) are not drawn.
        path: output ``.png``.
        title: axes title.
        label: method name shown in the legend, ``"<label> <name>: <ap>"``.
    Raises:
        FacedetError: the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    try:
        for name, (rec, prec, ap) in curves.items():
            rec = np.asarray(rec, dtype=np.float64)
            prec = np.asarray(prec, dtype=np.float64)
            ok = np.isfinite(prec) & np.isfinite(rec)
            ap_txt = "n/a" if ap is None or not np.isfinite(ap) else f"{ap:.3f}"
            ax.plot(rec[ok], prec[ok], linewidth=2, color=_COLORS.get(name), label=f"{label} {name}: {ap_txt}".strip())
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title(title)
        ax.grid(True, linestyle="--", alpha=0.6)
        ax.legend(loc="lower left")
        fig.tight_layout()
        try:
            fig.savefig(str(path), format="png")
        except OSError as exc:
            raise FacedetError(f"{path}: cannot write plot ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)


def plot_wider_result(result, path: str | Path, *, label: str = "facedet") -> None:
    """PR curves of easy / medium / hard of a :class:`~facedet.evaluation.wider.WiderResult`."""
    curves = {s: (result.recall[s], result.precision[s], result.ap[s]) for s in ("easy", "medium", "hard")}
    plot_pr_curves(curves, path, title="WIDER FACE val: Precision-Recall", label=label)


def plot_folder_result(result, path: str | Path, *, label: str = "facedet") -> None:
    """The IoU-0.5 PR curve of a :class:`~facedet.evaluation.folder.FolderResult`."""
    plot_pr_curves({"AP@0.5": (result.curve_recall, result.curve_precision, result.ap50)}, path, title="Precision-Recall (IoU 0.5)", label=label)
