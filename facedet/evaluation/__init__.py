"""Evaluation: the official WIDER FACE protocol, generic folders, plots and test-time runners.

* :mod:`facedet.evaluation.wider` -- the WIDER protocol (``.mat`` ground truth, prediction files);
* :mod:`facedet.evaluation.ap` -- COCO-style matching and AP for any annotated set;
* :mod:`facedet.evaluation.folder` -- VOC / generic-JSON folders;
* :mod:`facedet.evaluation.runner` -- running a detector (single scale or S3FD multi-scale);
* :mod:`facedet.evaluation.plots` -- precision-recall figures;
* :mod:`facedet.evaluation.cli` -- the ``facedet evaluate`` commands.
"""

from facedet.evaluation.folder import FolderResult, evaluate_folder, load_folder_annotations, read_folder_predictions
from facedet.evaluation.wider import WiderGroundTruth, WiderResult, evaluate_wider, evaluate_wider_arrays, load_wider_gt

__all__ = [
    "FolderResult",
    "WiderGroundTruth",
    "WiderResult",
    "evaluate_folder",
    "evaluate_wider",
    "evaluate_wider_arrays",
    "load_folder_annotations",
    "load_wider_gt",
    "read_folder_predictions",
]
