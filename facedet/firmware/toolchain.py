"""Find the tools that build and run the firmware bundle.

``make host`` needs make and a host C compiler; ``make m4`` needs make and the Arm
GNU toolchain with newlib; running the m4 build needs QEMU.  A missing tool is a
:class:`~facedet.errors.FacedetError` whose one line names the Debian packages to
install, for every missing tool at once::

    firmware tools missing: make, arm-none-eabi-gcc; install them with:
    apt-get install make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from facedet.errors import FacedetError

ARM_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
HOST_CC_NAMES = ("cc", "gcc", "clang")

# tool -> Debian packages that provide it (the Arm tools come as one set)
PACKAGES: dict[str, tuple[str, ...]] = {
    "make": ("make",),
    "cc": ("gcc",),
    "arm-none-eabi-gcc": ARM_PACKAGES,
    "arm-none-eabi-size": ARM_PACKAGES,
    "newlib": ARM_PACKAGES,
    "qemu-system-arm": ARM_PACKAGES,
}

BUILD_TOOLS = {"host": ("make", "cc"), "m4": ("make", "arm-none-eabi-gcc", "newlib", "arm-none-eabi-size")}
RUN_TOOLS = {"host": (), "m4": ("qemu-system-arm",)}


def _which(tool: str) -> str | None:
    if tool == "cc":
        for name in HOST_CC_NAMES:
            path = shutil.which(name)
            if path:
                return path
        return None
    if tool == "newlib":
        # arm-none-eabi-gcc without libnewlib-arm-none-eabi cannot link (--specs=nano.specs, -lm)
        gcc = shutil.which("arm-none-eabi-gcc")
        if gcc is None:
            return None
        try:
            out = subprocess.run([gcc, "-print-file-name=libc_nano.a"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        return out if Path(out).is_absolute() and Path(out).is_file() else None
    return shutil.which(tool)


def find_tools(*tools: str) -> dict[str, str]:
    """Paths of ``tools`` (names from :data:`PACKAGES`; ``cc`` is the first of cc, gcc, clang).

    Raises FacedetError naming every missing tool and the ``apt-get install`` line.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for tool in tools:
        if tool not in PACKAGES:
            raise ValueError(f"unknown firmware tool {tool!r}")
        path = _which(tool)
        if path is None:
            missing.append(tool)
        else:
            found[tool] = path
    if missing:
        packages: list[str] = []
        for tool in missing:
            packages += [p for p in PACKAGES[tool] if p not in packages]
        names = ", ".join("newlib for arm-none-eabi (libc_nano.a)" if t == "newlib" else "a host C compiler (cc)" if t == "cc" else t for t in missing)
        raise FacedetError(f"firmware tools missing: {names}; install them with: apt-get install {' '.join(packages)}")
    return found


def require(target: str, *, build: bool = True, run: bool = False) -> dict[str, str]:
    """The tools to build (and, with ``run``, to run) ``target`` ("host" or "m4"), by name."""
    if target not in BUILD_TOOLS:
        raise FacedetError(f"unknown firmware target {target!r}: expected 'host' or 'm4'")
    tools = (BUILD_TOOLS[target] if build else ()) + (RUN_TOOLS[target] if run else ())
    return find_tools(*tools)


def check(target: str) -> dict[str, str]:
    """Everything needed to build and run ``target``; raises the one-line FacedetError otherwise."""
    return require(target, build=True, run=True)
