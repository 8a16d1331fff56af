"""Build hooks (everything else is in pyproject.toml).

* The shipped weights live in the repository's weights/ folder and travel inside the package
  (facedet/weights_data/) in every built wheel, so pip install --user / --target / a virtualenv find
  them through importlib.resources.
* facedet._native, the C kernels of float inference (the fused RNNPool operator, direct convolutions;
  facedet/_native.c), is compiled with the system C compiler, also by an editable install.  It is
  optional: without a compiler, or if the build fails, the package installs anyway and inference
  runs on torch ops, with one warning naming the cause (facedet/native.py).
"""

import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

WEIGHTS = Path(__file__).resolve().parent / "weights"


class BuildPyWithWeights(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads weights/ in place
        target = Path(self.build_lib) / "facedet" / "weights_data"
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(WEIGHTS.glob("*.safetensors")):
            shutil.copy2(f, target / f.name)


class BuildNative(build_ext):
    """Compiler flags by compiler family; a failed build is reported and skipped (optional=True)."""

    def build_extension(self, ext):
        if self.compiler.compiler_type == "unix":  # gcc, clang (Linux, macOS, MinGW-style toolchains)
            # -O3 unrolls the fixed-size recurrences; no -march: the x86 kernels choose AVX2+FMA at run time
            ext.extra_compile_args = ["-O3", "-Wno-psabi", "-fno-math-errno"]
        try:
            super().build_extension(ext)
        except Exception as exc:  # optional=True skips it too; say why in plain words
            print(f"facedet: the native kernels were not built ({exc}); inference will use torch ops", file=sys.stderr)
            raise


setup(
    cmdclass={"build_py": BuildPyWithWeights, "build_ext": BuildNative},
    ext_modules=[Extension("facedet._native", ["facedet/_native.c"], optional=True)],
)
