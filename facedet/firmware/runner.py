"""Build a firmware bundle and run its harness on the host or on an emulated Cortex-M4.

Three calls:

- :func:`build` runs ``make host`` / ``make m4`` in the bundle and returns the binary;
- :func:`run` feeds one frame to the harness (protocol: ``platform/harness.h``) and
  returns a :class:`FirmwareRun`: status, instructions, stack high-water mark,
  profile marks and the raw ``facedet_result_t`` bytes;
- :func:`section_sizes` reads the section table of the m4 ELF.

The m4 build runs under ``qemu-system-arm -M mps2-an386`` with ``-icount
shift=ICOUNT_SHIFT``: every executed instruction advances virtual time by
2^ICOUNT_SHIFT ns and the harness turns SysTick ticks of the 25 MHz CPU clock
into instructions (exact to about one instruction; counts, not cycles).

Every failure is a one-line :class:`~facedet.errors.FacedetError`: a missing
tool (with the ``apt-get install`` line), a build error (the linker's
``region `RAM' overflowed by N bytes`` when the budget is too small), a harness
error (e.g. a frame of the wrong size), a CPU fault (``fault: MemManage (...)
CFSR=... HFSR=... MMFAR=... BFAR=... PC=...``), a QEMU lockup, or a timeout (the
process group is killed, never a hang).
"""

from __future__ import annotations

import math
import os
import re
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from facedet.errors import FacedetError
from facedet.firmware.toolchain import find_tools, require

ICOUNT_SHIFT = 6  # must equal FACEDET_ICOUNT_SHIFT in platform/m4_main.c
TARGETS = ("host", "m4")
BINARIES = {"host": Path("build/host/facedet"), "m4": Path("build/m4/facedet.elf")}
QEMU_MACHINE = ("-M", "mps2-an386", "-cpu", "cortex-m4")
RESULT_MAGIC = b"FDR1"
FAULT_EXIT = 3
HARNESS_EXIT = 1
MAX_RAM_KIB = 4096  # mps2-an386: 4 MiB of SRAM at 0x20000000 (m4.ld asserts the same)


@dataclass(frozen=True)
class FirmwareRun:
    """One facedet_run on the harness."""

    status: int                       # facedet_run's return value (FACEDET_OK = 0)
    instructions: int | None          # executed inside facedet_run (m4); None on the host
    stack_bytes: int | None           # main-stack high-water mark in bytes (m4); None on the host
    marks: list[tuple[int, int | None]] = field(default_factory=list)  # (stage, cumulative instructions)
    result: bytes = b""               # the raw facedet_result_t
    wall_s: float = 0.0               # wall-clock seconds of the whole process (QEMU included)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise FacedetError(f"unknown firmware target {target!r}: expected 'host' or 'm4'")


def _execute(cmd: list[str], *, cwd: Path, timeout: float) -> tuple[int, str, str, float]:
    """Run cmd in its own process group; on timeout kill the whole group.  (rc, stdout, stderr, wall_s)"""
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise FacedetError(f"cannot start {cmd[0]}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), time.perf_counter() - start


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _build_error(text: str) -> str:
    """The most useful single line of a failed make."""
    lines = [re.sub(r"^\S*/ld(\.bfd)?: ", "ld: ", line) for line in _lines(text)]
    for line in lines:
        m = re.search(r"region .* overflowed by \d+ bytes", line)
        if m:
            return m.group(0)
    for pattern in (r"undefined reference to ", r"\berror: ", r"^ld: "):
        for line in lines:
            if re.search(pattern, line) and not line.startswith("collect2"):
                return line
    rest = [line for line in lines if not line.startswith("make")]
    return (rest or lines or ["(no output)"])[-1]


def build(bundle_dir: str | Path, target: str, *, ram_kib: int | None = None, timeout: float = 600.0) -> Path:
    """``make TARGET`` in the bundle; returns the binary (build/host/facedet or build/m4/facedet.elf).

    ``ram_kib`` overrides config.mk's RAM_KIB for this build (``make m4 RAM_KIB=n``); make
    relinks whenever the budget or a source changes.  Raises FacedetError on any failure.
    """
    _check_target(target)
    bundle = Path(bundle_dir)
    if not (bundle / "Makefile").is_file():
        raise FacedetError(f"{bundle} is not a firmware bundle (no Makefile)")
    tools = require(target)
    cmd = [tools["make"], f"-j{min(os.cpu_count() or 1, 8)}", target]
    if target == "host":
        cmd.append(f"HOST_CC={tools['cc']}")
    if ram_kib is not None:
        if isinstance(ram_kib, bool) or not isinstance(ram_kib, int) or not 1 <= ram_kib <= MAX_RAM_KIB:
            raise FacedetError(f"RAM budget must be a whole number of KiB in 1..{MAX_RAM_KIB}, got {ram_kib!r}")
        cmd.append(f"RAM_KIB={ram_kib}")
    try:
        rc, out, err, _ = _execute(cmd, cwd=bundle, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FacedetError(f"firmware build ({target}) timed out after {timeout:g} s") from None
    if rc != 0:
        budget = f", RAM_KIB={ram_kib}" if ram_kib is not None else ""
        raise FacedetError(f"firmware build ({target}{budget}) failed: {_build_error(err + chr(10) + out)}")
    binary = bundle / BINARIES[target]
    if not binary.is_file():
        raise FacedetError(f"firmware build ({target}) produced no {binary}")
    return binary


def _ppm(value: float | None, name: str) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        raise FacedetError(f"{name} must be a finite number, got {value}")
    return str(int(round(value * 1_000_000)))


def _parse_result(data: bytes, *, counted: bool) -> FirmwareRun:
    """Decode a RESULT_FILE (platform/harness.h); ``counted``: instruction and stack fields are real."""
    def bad(why: str) -> FacedetError:
        return FacedetError(f"the firmware harness wrote a malformed result file ({why})")

    if len(data) < 24 or data[:4] != RESULT_MAGIC:
        raise bad("no FDR1 header")
    status, lo, hi, stack, n_marks = struct.unpack_from("<iIIII", data, 4)
    pos = 24
    if len(data) < pos + 12 * n_marks + 4:
        raise bad("truncated marks")
    marks: list[tuple[int, int | None]] = []
    for _ in range(n_marks):
        stage, mlo, mhi = struct.unpack_from("<III", data, pos)
        marks.append((stage, mlo | mhi << 32 if counted else None))
        pos += 12
    (size,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if len(data) != pos + size:
        raise bad(f"result_bytes {size} but {len(data) - pos} bytes follow")
    return FirmwareRun(status=status, instructions=lo | hi << 32 if counted else None,
                       stack_bytes=stack if counted else None, marks=marks, result=bytes(data[pos:]))


def _run_error(target: str, rc: int, err: str) -> FacedetError:
    lines = _lines(err)
    last = lines[-1] if lines else "(no message)"
    if rc == HARNESS_EXIT:
        return FacedetError(f"firmware harness ({target}): {last}")
    if target == "m4" and rc == FAULT_EXIT:
        line = next((x for x in lines if x.startswith("fault:")), last)
        return FacedetError(f"firmware (m4) CPU {line}")
    if target == "m4" and rc in (134, -signal.SIGABRT):
        line = next((x for x in lines if "fatal" in x), last)
        return FacedetError(f"firmware (m4) locked up (a fault while handling a fault): {line}")
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return FacedetError(f"firmware ({target}) crashed with {name}: {last}")
    return FacedetError(f"firmware ({target}) exited with status {rc}: {last}")


def run(bundle_dir: str | Path, target: str, frame: bytes, *, score_threshold: float | None = None,
        nms_threshold: float | None = None, max_faces: int | None = None, timeout: float = 60.0) -> FirmwareRun:
    """Run the harness built by :func:`build` on one frame (FACEDET_INPUT_BYTES raw bytes).

    Thresholds are passed in millionths (rounded); None keeps the bundle's default
    (FACEDET_DEFAULT_*_THRESHOLD, FACEDET_MAX_FACES).  The files go through a temporary
    directory.  Raises FacedetError for a harness error, a CPU fault, a lockup or a timeout.
    """
    _check_target(target)
    bundle = Path(bundle_dir)
    binary = (bundle / BINARIES[target]).resolve()
    tools = require(target, build=False, run=True)
    if not binary.is_file():
        raise FacedetError(f"firmware ({target}) is not built: no {binary} (build it first)")
    args = ["frame.bin", "result.bin", _ppm(score_threshold, "score_threshold"), _ppm(nms_threshold, "nms_threshold"),
            "-" if max_faces is None else str(int(max_faces))]
    with tempfile.TemporaryDirectory(prefix="facedet-fw-") as tmp:
        work = Path(tmp)
        (work / "frame.bin").write_bytes(bytes(frame))
        if target == "host":
            cmd = [str(binary), *args]
        else:
            semihosting = ",".join(["enable=on", "target=native", "arg=facedet", *(f"arg={a}" for a in args)])
            cmd = [tools["qemu-system-arm"], *QEMU_MACHINE, "-nographic", "-monitor", "none", "-serial", "null",
                   "-no-reboot", "-icount", f"shift={ICOUNT_SHIFT}", "-semihosting-config", semihosting,
                   "-kernel", str(binary)]
        try:
            rc, _, err, wall = _execute(cmd, cwd=work, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FacedetError(f"firmware ({target}) timed out after {timeout:g} s (hung, or needs a longer timeout)") from None
        if rc != 0:
            raise _run_error(target, rc, err)
        result_file = work / "result.bin"
        if not result_file.is_file():
            raise FacedetError(f"firmware ({target}) exited 0 without writing its result file")
        parsed = _parse_result(result_file.read_bytes(), counted=target == "m4")
    return FirmwareRun(parsed.status, parsed.instructions, parsed.stack_bytes, parsed.marks, parsed.result, wall)


NON_ALLOC = re.compile(r"^\.(comment|ARM\.attributes|debug.*|stab.*|note.*)$")


def section_sizes(elf: str | Path) -> dict[str, int]:
    """Sizes in bytes of the ELF's allocated sections, from ``arm-none-eabi-size -A``, in address order.

    For the m4 build: .vectors, .text, .rodata (flash; .ARM.exidx when present), .stack_main,
    .data, .bss, .stack_msp (RAM; these four add up to RAM_KIB * 1024).  Flash use is
    .vectors + .text + .rodata + .ARM.* + .data (its load image).
    """
    tool = find_tools("arm-none-eabi-size")["arm-none-eabi-size"]
    elf = Path(elf)
    if not elf.is_file():
        raise FacedetError(f"no such ELF file: {elf}")
    proc = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FacedetError(f"arm-none-eabi-size failed on {elf}: {(_lines(proc.stderr) or ['?'])[-1]}")
    sizes: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() and not NON_ALLOC.match(parts[0]):
            sizes[parts[0]] = int(parts[1])
    return sizes
