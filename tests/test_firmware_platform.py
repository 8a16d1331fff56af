"""The firmware platform layer (facedet/firmware/c/platform, Makefile, runner, toolchain).

A tiny stub library stands in for the generated model: the real compilers build it
into the real host and Cortex-M4 harnesses and QEMU runs the latter.  The frame's
first byte picks what the stub does inside facedet_run (a normal run, a loop of a
known number of instructions, a recursion of a given depth, a hang, a store to an
address, a lockup), so every platform behaviour is checked end to end.
"""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from facedet.errors import FacedetError
from facedet.firmware import runner, toolchain

C_DIR = Path(runner.__file__).resolve().parent / "c"

INPUT = 64          # 8 x 8 x 1
PRIORS = 16
MAX_FACES = 4
STAGES = 3
ARENA = 256
RAM_KIB = 13        # not a power of two: the MPU needs two regions (12 KiB of a 16 KiB one + 1 KiB)
STACK_MIN = 2048
MSP_STACK = 512     # the Makefile's default
RESULT_BYTES = PRIORS * 6 + 4 + MAX_FACES * 20
RAM_START = 0x20000000

STUB = r"""
#include <math.h>
#include <stdint.h>
#include "facedet.h"

size_t facedet_arena_size(void) { return FACEDET_ARENA_SIZE; }
int8_t *facedet_input(void *arena) { return (int8_t *)arena; }

#ifdef FACEDET_PROFILE
#define MARK(i) facedet_profile_mark(i)
#else
#define MARK(i) ((void)0)
#endif
#ifndef STUB_XOR
#define STUB_XOR 0x55
#endif

static uint32_t le32(const int8_t *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* exactly 2 instructions per iteration on the M4 */
static __attribute__((noinline)) void spin(uint32_t n)
{
#if defined(__arm__)
    if (n != 0) __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
#else
    volatile uint32_t i;
    for (i = 0; i < n; i++) {
    }
#endif
}

static __attribute__((noinline)) uint32_t recurse(uint32_t depth, const volatile uint8_t *prev)
{
    volatile uint8_t buf[64];
    buf[0] = (uint8_t)depth;
    buf[63] = prev != 0 ? prev[0] : 0;
    if (depth == 0) return buf[0];
    return recurse(depth - 1, buf) + buf[63];
}

int facedet_run(void *arena, size_t arena_size, const facedet_config_t *config, facedet_result_t *result)
{
    static const facedet_config_t defaults = {FACEDET_DEFAULT_SCORE_THRESHOLD, FACEDET_DEFAULT_NMS_THRESHOLD,
                                              FACEDET_MAX_FACES};
    const int8_t *x = (const int8_t *)arena;
    float score;
    int i, k;
    if (arena == 0 || result == 0 || ((uintptr_t)arena & 3u) != 0) return FACEDET_ERR_ARGUMENT;
    if (arena_size < FACEDET_ARENA_SIZE) return FACEDET_ERR_ARENA;
    if (config == 0) config = &defaults;
    if (!(config->score_threshold >= 0.0f && config->score_threshold <= 1.0f)
        || !(config->nms_threshold >= 0.0f && config->nms_threshold <= 1.0f))
        return FACEDET_ERR_ARGUMENT;
    MARK(0);
    switch ((uint8_t)x[0]) {
    case 1: spin(le32(x + 1)); break;                              /* a loop of known length */
    case 2: result->num_faces = (int32_t)recurse(le32(x + 1), 0); break;   /* stack depth */
    case 3: for (;;) __asm__ volatile("");                         /* hang */
#if defined(__arm__)
    case 4: *(volatile uint8_t *)(uintptr_t)le32(x + 1) = 0x5A; break;    /* store anywhere */
    case 5: __asm__ volatile("msr msp, %0\n udf #0" : : "r"(0u)); break;    /* lockup */
#endif
    default: break;
    }
    MARK(1);
    for (i = 0; i < FACEDET_PRIORS; i++) {
        result->conf[i][0] = x[i % FACEDET_INPUT_BYTES];
        result->conf[i][1] = (int8_t)(x[(7 * i + 3) % FACEDET_INPUT_BYTES] ^ STUB_XOR);
        for (k = 0; k < 4; k++) result->loc[i][k] = (int8_t)(x[(i + 13 * k) % FACEDET_INPUT_BYTES] + k);
    }
    MARK(2);
    score = sqrtf((float)(uint8_t)x[5] / 255.0f);
    result->num_faces = 0;
    if (score > config->score_threshold && config->max_faces > 0) {
        facedet_face_t *f = &result->faces[0];
        f->x1 = (float)x[6] / 3.0f;
        f->y1 = (float)x[7] / 7.0f;
        f->x2 = f->x1 + config->nms_threshold * 10.0f;
        f->y2 = f->y1 + 12.25f;
        f->score = score;
        result->num_faces = 1;
    }
    MARK(FACEDET_STAGES);
    return FACEDET_OK;
}
"""


def make_bundle(root: Path) -> Path:
    """A bundle laid out like export-firmware's, with the stub as its library."""
    (root / "include").mkdir(parents=True)
    (root / "src").mkdir()
    header = (C_DIR / "include" / "facedet.h.in").read_text()
    for key, value in {"MODEL": "stub", "INPUT_H": 8, "INPUT_W": 8, "INPUT_C": 1, "PRIORS": PRIORS,
                       "MAX_FACES": MAX_FACES, "ARENA": ARENA, "STAGES": STAGES, "THRESHOLD": "0.5",
                       "NMS": "0.3"}.items():
        header = header.replace(f"@{key}@", str(value))
    assert "@" not in header
    (root / "include" / "facedet.h").write_text(header)
    (root / "src" / "stub.c").write_text(STUB)
    shutil.copytree(C_DIR / "platform", root / "platform")
    shutil.copy2(C_DIR / "Makefile", root / "Makefile")
    (root / "config.mk").write_text(f"RAM_KIB = {RAM_KIB}\nFLASH_KIB = 256\nSTACK_MIN = {STACK_MIN}\n")
    return root


def frame(mode: int = 0, arg: int = 0, seed: int | None = None) -> bytes:
    if seed is not None:
        data = bytearray(np.random.default_rng(seed).integers(0, 256, INPUT, dtype=np.uint8).tobytes())
        data[0] = 0 if data[0] < 6 else data[0]
        return bytes(data)
    return bytes([mode]) + struct.pack("<I", arg) + bytes(INPUT - 5)


def expected_result(data: bytes, score_t: float = 0.5, nms_t: float = 0.3, max_faces: int = MAX_FACES) -> bytes:
    """The stub's facedet_result_t, computed in Python (float32 like the C)."""
    x = np.frombuffer(data, dtype=np.int8)
    conf = np.zeros((PRIORS, 2), np.int8)
    loc = np.zeros((PRIORS, 4), np.int8)
    for i in range(PRIORS):
        conf[i] = [x[i % INPUT], x[(7 * i + 3) % INPUT] ^ 0x55]
        loc[i] = [np.int8((int(x[(i + 13 * k) % INPUT]) + k + 128) % 256 - 128) for k in range(4)]
    f32 = np.float32
    score = np.sqrt(f32(data[5]) / f32(255))
    faces = np.zeros((MAX_FACES, 5), np.float32)
    n = 0
    if score > f32(score_t) and max_faces > 0:
        x1, y1 = f32(x[6]) / f32(3), f32(x[7]) / f32(7)
        faces[0] = [x1, y1, x1 + f32(nms_t) * f32(10), y1 + f32(12.25), score]
        n = 1
    return conf.tobytes() + loc.tobytes() + struct.pack("<i", n) + faces.astype("<f4").tobytes()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = make_bundle(tmp_path_factory.mktemp("fw") / "bundle")
    assert runner.build(root, "host") == root / "build/host/facedet"
    assert runner.build(root, "m4") == root / "build/m4/facedet.elf"
    return root


def test_host_and_m4_agree_with_the_stub(bundle):
    cases = [dict(), dict(score_threshold=0.2, nms_threshold=0.45, max_faces=3), dict(score_threshold=0.99),
             dict(max_faces=0), dict(score_threshold=0.5, nms_threshold=0.3, max_faces=MAX_FACES)]
    for seed in range(3):
        data = frame(seed=seed)
        for kw in cases:
            host = runner.run(bundle, "host", data, **kw)
            m4 = runner.run(bundle, "m4", data, **kw)
            assert host.status == m4.status == 0
            assert host.result == m4.result
            want = expected_result(data, kw.get("score_threshold", 0.5), kw.get("nms_threshold", 0.3),
                                   kw.get("max_faces", MAX_FACES))
            assert m4.result == want, (seed, kw)
            assert host.instructions is None and host.stack_bytes is None
            assert host.marks == [(s, None) for s in range(STAGES + 1)]
            assert [s for s, _ in m4.marks] == list(range(STAGES + 1))
            assert m4.instructions > 0 and 0 < m4.stack_bytes < RAM_KIB * 1024
            assert len(m4.result) == RESULT_BYTES
    assert struct.unpack_from("<i", runner.run(bundle, "m4", frame(seed=0) [:5] + b"\xff" + frame(seed=0)[6:],
                                               score_threshold=0.1).result, PRIORS * 6)[0] == 1
    # the library's status comes back in the file (thresholds outside [0, 1] are FACEDET_ERR_ARGUMENT)
    for target in ("host", "m4"):
        assert runner.run(bundle, target, frame(), score_threshold=1.5).status == -1
        assert runner.run(bundle, target, frame(), nms_threshold=-0.1).status == -1


def test_instruction_count_of_a_known_loop(bundle):
    base = runner.run(bundle, "m4", frame(1, 0))
    assert 0 < base.instructions < 5000
    # 2 instructions per iteration; 20 M iterations make SysTick's 24-bit counter wrap several times
    for n in (1, 1000, 1_000_000, 20_000_000):
        r = runner.run(bundle, "m4", frame(1, n))
        # within 2, plus ~5 instructions of SysTick interrupt every 2^24 ticks (10.5 M instructions)
        slack = 2 + 5 * (2 * n // 10_000_000)
        assert abs((r.instructions - base.instructions) - 2 * n) <= slack, (n, r.instructions, base.instructions)
        stages, base_stages = dict(r.marks), dict(base.marks)
        assert abs((stages[1] - stages[0]) - (base_stages[1] - base_stages[0]) - 2 * n) <= slack, (n, r.marks)
        counts = [c for _, c in r.marks]
        assert counts == sorted(counts) and counts[-1] <= r.instructions
    again = [runner.run(bundle, "m4", frame(1, 12345)) for _ in range(2)]
    assert again[0].instructions == again[1].instructions and again[0].marks == again[1].marks
    assert again[0].stack_bytes == again[1].stack_bytes


def test_stack_high_water_grows_with_recursion(bundle):
    shallow = runner.run(bundle, "m4", frame(2, 10)).stack_bytes
    deep = runner.run(bundle, "m4", frame(2, 100)).stack_bytes
    assert 0 < shallow < 2048
    # each level holds a 64-byte buffer plus the saved registers
    assert 90 * 64 <= deep - shallow <= 90 * 128, (shallow, deep)
    assert runner.run(bundle, "host", frame(2, 100)).stack_bytes is None


def test_stack_overflow_faults_with_registers(bundle):
    with pytest.raises(FacedetError) as exc:
        runner.run(bundle, "m4", frame(2, 100_000))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "fault: MemManage" in msg and "stack overflow" in msg, msg
    for reg in ("CFSR=0x", "HFSR=0x", "MMFAR=0x", "BFAR=0x", "PC="):
        assert reg in msg


def test_mpu_enforces_the_ram_budget(bundle):
    end = RAM_START + RAM_KIB * 1024
    # inside the budget: both ends of RAM (the bottom of the main stack, the top of the handler stack)
    for addr in (RAM_START, end - 1):
        assert runner.run(bundle, "m4", frame(4, addr)).status == 0
    # the first byte past the budget, far beyond it, below RAM, and flash (read-only)
    for addr, cause in ((end, "outside the RAM budget"), (end + 64 * 1024, "outside the RAM budget"),
                        (RAM_START - 1, "main stack overflow"), (0x100, "write to flash")):
        with pytest.raises(FacedetError, match=f"fault: MemManage \\([^)]*{cause}\\) CFSR=0x00000082 .*MMFAR=0x{addr:08x}"):
            runner.run(bundle, "m4", frame(4, addr))


def test_lockup_is_reported(bundle):
    with pytest.raises(FacedetError, match="locked up.*Lockup"):
        runner.run(bundle, "m4", frame(5))


def test_hang_hits_the_timeout(bundle):
    start = time.perf_counter()
    with pytest.raises(FacedetError, match=r"firmware \(m4\) timed out after 0.5 s"):
        runner.run(bundle, "m4", frame(3), timeout=0.5)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("target", ["host", "m4"])
def test_wrong_size_frame_is_a_one_line_error(bundle, target):
    for size in (INPUT - 1, INPUT + 1, 0):
        with pytest.raises(FacedetError) as exc:
            runner.run(bundle, target, bytes(size))
        msg = str(exc.value)
        assert "\n" not in msg
        assert f"holds {size} bytes, expected {INPUT} (FACEDET_INPUT_BYTES)" in msg


def test_section_sizes_fill_the_budget(bundle):
    sizes = runner.section_sizes(bundle / "build/m4/facedet.elf")
    assert {".vectors", ".text", ".rodata", ".stack_main", ".data", ".bss", ".stack_msp"} <= set(sizes)
    assert not any(name.startswith(".debug") or name == ".comment" for name in sizes)
    ram = sizes[".stack_main"] + sizes[".data"] + sizes[".bss"] + sizes[".stack_msp"]
    assert ram == RAM_KIB * 1024
    assert sizes[".stack_msp"] == MSP_STACK and sizes[".stack_main"] >= STACK_MIN
    assert sizes[".bss"] >= ARENA + RESULT_BYTES


def test_budget_override_and_rebuilds(tmp_path, bundle):
    root = make_bundle(tmp_path / "b")
    base = runner.section_sizes(runner.build(root, "m4"))
    fixed = base[".data"] + base[".bss"] + MSP_STACK
    # too small: the linker names the shortfall exactly (.data + .bss + STACK_MIN + MSP_STACK - budget)
    for kib in (1, 3):
        with pytest.raises(FacedetError) as exc:
            runner.build(root, "m4", ram_kib=kib)
        msg = str(exc.value)
        assert "\n" not in msg and f"RAM_KIB={kib}" in msg
        assert msg.endswith(f"region `RAM' overflowed by {fixed + STACK_MIN - kib * 1024} bytes"), msg
    # the command-line budget replaces config.mk's, and make relinks when it changes back
    assert sum(runner.section_sizes(runner.build(root, "m4", ram_kib=7)).get(s, 0)
               for s in (".stack_main", ".data", ".bss", ".stack_msp")) == 7 * 1024
    assert runner.run(root, "m4", frame(4, RAM_START + 7 * 1024 - 1)).status == 0
    with pytest.raises(FacedetError, match="MMFAR=0x20001c00"):
        runner.run(root, "m4", frame(4, RAM_START + 7 * 1024))
    assert runner.section_sizes(runner.build(root, "m4"))[".stack_main"] == base[".stack_main"]
    # a changed source is rebuilt
    data = frame(seed=4)
    runner.build(root, "host")
    before = runner.run(root, "host", data).result
    (root / "src" / "stub.c").write_text("#define STUB_XOR 0x66\n" + STUB)
    runner.build(root, "host")
    after = runner.run(root, "host", data).result
    assert before != after and after[1] == (data[3] ^ 0x66)


def test_missing_tools_name_the_packages(tmp_path, bundle, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for call in (lambda: runner.build(bundle, "m4"), lambda: runner.run(bundle, "m4", frame()),
                 lambda: runner.section_sizes(bundle / "build/m4/facedet.elf")):
        with pytest.raises(FacedetError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg
        assert "apt-get install" in msg and "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm" in msg, msg
    with pytest.raises(FacedetError, match=r"make, a host C compiler \(cc\); install them with: apt-get install make gcc$"):
        runner.build(bundle, "host")
    with pytest.raises(FacedetError, match="firmware tools missing: qemu-system-arm;"):
        toolchain.require("m4", build=False, run=True)
    with pytest.raises(FacedetError, match="apt-get install make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm$"):
        toolchain.check("m4")
    monkeypatch.undo()
    assert set(toolchain.check("m4")) == {"make", "arm-none-eabi-gcc", "newlib", "arm-none-eabi-size", "qemu-system-arm"}
