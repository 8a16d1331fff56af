"""export-firmware and firmware run end to end: the real compiler, the real emulator, the shipped integer model.

The bit-exact claim: the raw int8 head outputs of the Cortex-M4 build under QEMU,
of the host build and of the Python integer interpreter are identical, every value.
"""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedet.errors import FacedetError
from facedet.firmware import runner
from facedet.firmware.export import export_firmware
from facedet.firmware.run import Bundle, run_firmware
from facedet.inference import Detector
from tests.clitools import one_line_error
from tests.clitools import run as run_cli

DATA = Path(__file__).parent / "data"






@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A 4:3 photo (the firmware's aspect), the square test photos, and awkward images."""
    d = tmp_path_factory.mktemp("photos")
    grace = cv2.imread(str(DATA / "grace_hopper.jpg"))
    astro = cv2.imread(str(DATA / "astronaut.jpg"))
    cv2.imwrite(str(d / "astro_43.png"), cv2.resize(astro[40:424, :], (640, 480)))  # 4:3, the face at a findable size
    cv2.imwrite(str(d / "grey16.png"), (cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)[:300])  # 16-bit grey, 512 wide
    cv2.imwrite(str(d / "tall.png"), astro[:, 200:300])  # 512x100: letterboxed
    cv2.imwrite(str(d / "tiny.png"), astro[::50, ::50])  # 11x11: enlarged
    for name in ("astronaut.jpg", "grace_hopper.jpg"):
        shutil.copy(DATA / name, d / name)
    return {p.name: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fw") / "bundle"
    export_firmware(None, out)  # the shipped integer model
    return out


def test_bundle_layout(bundle):
    for rel in ("include/facedet.h", "src/model.c", "src/weights.c", "src/fd_stage_stem_pool.c", "platform/startup.c", "Makefile", "config.mk",
                "model.safetensors", "bundle.json", "memory_report.json", "memory_report.md"):
        assert (bundle / rel).is_file(), rel
    header = (bundle / "include/facedet.h").read_text()
    assert "#define FACEDET_INPUT_HEIGHT   240" in header and "#define FACEDET_INPUT_WIDTH    320" in header
    model = (bundle / "src/model.c").read_text()
    for stage in ("features.0-1", "features.2", "heads.0", "features.5", "heads.3", "postprocess"):
        assert f"/* {stage}" in model  # named layers with their shapes, in schedule order
    assert "malloc" not in model and "static int" not in model
    report = json.loads((bundle / "memory_report.json").read_text())
    assert report["arena_bytes"] == 92544 and report["arena_peak_stage"] in ("features.0-1", "features.2")
    assert "RAM_KIB = 128" in (bundle / "config.mk").read_text()


def test_host_build_is_bit_exact_and_matches_detect(bundle, photos):
    files = [photos[n] for n in ("astro_43.png", "astronaut.jpg", "grey16.png", "tall.png", "tiny.png")]
    report = run_firmware(bundle, files, target="host", check=True)
    assert [r["bit_exact"] for r in report.records] == [True] * len(files)
    assert [r["fit"] for r in report.records] == ["resize", "letterbox", "letterbox", "letterbox", "letterbox"]
    # the firmware's faces, for a photo with its aspect ratio, are detect --single-scale's
    rec = report.records[0]
    det = Detector.load(Bundle.open(bundle).path / "model.safetensors")
    d = det.detect(cv2.imread(str(photos["astro_43.png"])), pyramid=False)
    assert len(d) == len(rec["faces"]) >= 1
    for face, box, score in zip(rec["faces"], d.boxes, d.scores):
        assert np.abs(np.array(face["box"]) - box).max() <= 0.5
        assert abs(face["score"] - score) <= 1e-3


def test_m4_under_qemu_is_bit_exact_within_budget(bundle, photos):
    report = run_firmware(bundle, [photos["astro_43.png"], photos["grace_hopper.jpg"]], target="m4", check=True)
    for rec in report.records:
        assert rec["bit_exact"] is True
        assert rec["instructions"] > 10_000_000 and rec["stack_bytes"] > 0
        assert len(rec["stages"]) == 10 and sum(rec["stages"]) <= rec["instructions"]
    host = run_firmware(bundle, [photos["astro_43.png"]], target="host")
    assert host.records[0]["faces"] == report.records[0]["faces"]
    mem = json.loads((bundle / "memory_report.json").read_text())
    assert isinstance(mem["stack_bytes"], int) and isinstance(mem["flash_bytes"], int)
    assert mem["ram_bytes"] <= 128 * 1024 and mem["flash_bytes"] <= 256 * 1024
    assert mem["sections"][".bss"] >= mem["arena_bytes"] + mem["result_bytes"]
    assert "stack high-water mark" in (bundle / "memory_report.md").read_text()


def test_a_broken_weight_is_caught(bundle, tmp_path, photos):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken, ignore=shutil.ignore_patterns("build"))
    src = (broken / "src/weights.c").read_text()
    m = re.search(r"const int8_t features_2_project_weight\[\d+\] = \{\n    (-?\d+)", src)
    value = int(m.group(1))
    src = src[: m.start(1)] + str(value + 1 if value < 127 else value - 1) + src[m.end(1):]
    (broken / "src/weights.c").write_text(src)
    r = run_cli("firmware", "run", broken, photos["astro_43.png"], "--target", "host", "--check", "--json", "-")
    one_line_error(r, "1 of 1 images differ from the Python integer interpreter")
    rec = json.loads(r.stdout)[0]
    assert rec["bit_exact"] is False and rec["mismatched_values"] > 0


def test_cli_export_and_run(tmp_path, photos):
    out = tmp_path / "fw"
    r = run_cli("export-firmware", "--out", out)
    assert r.exit_code == 0, r.output
    assert "arena 92,544 B" in r.stdout and "m4 build: RAM used" in r.stdout
    mem = json.loads((out / "memory_report.json").read_text())
    assert all(isinstance(mem[k], int) for k in ("arena_bytes", "stack_bytes", "ram_bytes", "flash_bytes"))
    r = run_cli("firmware", "run", out, photos["astro_43.png"], "--check", "--json", "-")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)[0]
    assert rec["bit_exact"] is True and rec["instructions"] > 0 and rec["wall_s"] > 0
    assert rec["faces"] and set(rec["faces"][0]) == {"box", "score"}
    r = run_cli("firmware", "run", out, photos["astro_43.png"], "--target", "host")
    assert r.exit_code == 0 and "1 face" in r.stdout
    # nothing overwritten without --force, and never a folder that is not a bundle
    one_line_error(run_cli("export-firmware", "--out", out), "already exists")
    assert run_cli("export-firmware", "--out", out, "--force", "--no-build").exit_code == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    one_line_error(run_cli("export-firmware", "--out", other, "--force", "--no-build"), "is not a facedet firmware bundle")
    assert (other / "notes.txt").read_text() == "keep"


def test_budget_enforced_at_export_link_and_run_time(bundle, tmp_path):
    # export: a budget below the plan is refused, naming the peak and where it sits
    r = run_cli("export-firmware", "--out", tmp_path / "small", "--ram-kib", "64", "--no-build")
    one_line_error(r, "the planned arena peaks at 92,544 B at")
    # link time: the linker script's RAM region is the budget
    small = tmp_path / "link"
    shutil.copytree(bundle, small, ignore=shutil.ignore_patterns("build"))
    with pytest.raises(FacedetError, match="overflowed by"):
        runner.build(small, "m4", ram_kib=100)
    # run time: a budget that links but leaves the main stack half of what the detector uses faults (MPU)
    sections = runner.section_sizes(runner.build(small, "m4"))
    frame = bytes(240 * 320)
    high_water = runner.run(small, "m4", frame, timeout=60).stack_bytes
    data_bss = sections[".data"] + sections[".bss"]
    ram_kib = -(-(data_bss + 1024) // 1024)
    msp = (ram_kib * 1024 - data_bss - high_water // 2) // 8 * 8  # the handler stack takes the rest of the budget
    (small / "config.mk").write_text(f"RAM_KIB = {ram_kib}\nFLASH_KIB = 256\nSTACK_MIN = 8\nMSP_STACK = {msp}\n")
    runner.build(small, "m4")
    assert runner.section_sizes(small / "build/m4/facedet.elf")[".stack_main"] < high_water
    with pytest.raises(FacedetError, match=r"fault: .*CFSR=0x"):
        runner.run(small, "m4", frame, timeout=60)


def test_firmware_run_bad_inputs(bundle, tmp_path, photos, weights_file, monkeypatch):
    one_line_error(run_cli("export-firmware", "--out", tmp_path / "f", "--weights", weights_file), "holds float weights")
    one_line_error(run_cli("firmware", "run", tmp_path, photos["astronaut.jpg"]), "is not a facedet firmware bundle")
    one_line_error(run_cli("firmware", "run", bundle, photos["astronaut.jpg"], "--target", "riscv"), "--target must be m4 or host")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    r = run_cli("firmware", "run", bundle, junk, photos["tiny.png"], "--target", "host")
    assert r.exit_code == 3 and "1 of 2 inputs failed" in r.stderr and "tiny.png: 0 face" in r.stdout
    with pytest.raises(FacedetError, match="timed out"):
        runner.run(bundle, "m4", bytes(240 * 320), timeout=0.05)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    one_line_error(run_cli("firmware", "run", bundle, photos["astronaut.jpg"]), "apt-get install")
