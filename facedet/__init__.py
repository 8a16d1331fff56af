"""facedet: RNNPool face detection for laptops and microcontrollers."""

__version__ = "0.1.0"

from facedet.errors import FacedetError  # noqa: E402

__all__ = ["FacedetError", "__version__"]
