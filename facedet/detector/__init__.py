"""The RNNPool-Face model family, priors, box codec and post-processing.

The architectures (:mod:`facedet.detector.spec`) import without torch; the
torch model (``RNNPoolFace``, ``build_model``) is imported on first use, so
that inference which does not run torch never loads it.
"""

from facedet.detector.spec import ARCHS, DEFAULT_ARCH, ArchSpec

__all__ = ["ARCHS", "DEFAULT_ARCH", "ArchSpec", "RNNPoolFace", "build_model"]


def __getattr__(name: str):
    if name in ("RNNPoolFace", "build_model"):
        from facedet.detector import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
