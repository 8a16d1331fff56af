"""The RNNPool-Face model family, priors, box codec and post-processing."""

from facedet.detector.model import ARCHS, DEFAULT_ARCH, ArchSpec, RNNPoolFace, build_model

__all__ = ["ARCHS", "DEFAULT_ARCH", "ArchSpec", "RNNPoolFace", "build_model"]
