"""Build hook: the shipped weights live in the repository's weights/ folder and travel inside the
package (facedet/weights_data/) in every built wheel, so pip install --user / --target / a
virtualenv find them through importlib.resources.  Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
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


setup(cmdclass={"build_py": BuildPyWithWeights})
