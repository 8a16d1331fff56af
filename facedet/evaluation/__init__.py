"""Evaluation: the official WIDER FACE protocol, generic folders, plots and test-time runners.

* :mod:`facedet.evaluation.wider` -- the WIDER protocol (``.mat`` ground truth, prediction files);
* :mod:`facedet.evaluation.ap` -- COCO-style matching and AP for any annotated set;
* :mod:`facedet.evaluation.folder` -- VOC / generic-JSON folders;
* :mod:`facedet.evaluation.runner` -- running a detector (single scale or S3FD multi-scale);
* :mod:`facedet.evaluation.plots` -- precision-recall figures;
* :mod:`facedet.evaluation.cli` -- the ``facedet evaluate`` commands.
"""

_EXPORTS = {
    "FolderResult": "folder",
    "evaluate_folder": "folder",
    "load_folder_annotations": "folder",
    "read_folder_predictions": "folder",
    "WiderGroundTruth": "wider",
    "WiderResult": "wider",
    "evaluate_wider": "wider",
    "evaluate_wider_arrays": "wider",
    "load_wider_gt": "wider",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use: the command line registers 'facedet evaluate' on every start.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"facedet.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
