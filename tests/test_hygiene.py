"""Code and documentation hygiene: one implementation of each shared piece, docs that describe the
product, and citations that resolve."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from facedet.boxes import box_iou, nms

REPO = Path(__file__).resolve().parent.parent


def python_files():
    for base in ("facedet", "scripts", "tests"):
        for p in sorted((REPO / base).rglob("*.py")):
            yield p.relative_to(REPO).as_posix(), p


# --------------------------------------------------------------------------- one implementation each


def test_one_iou_and_one_nms():
    allowed = {("facedet/boxes.py", "box_iou"), ("facedet/boxes.py", "nms"), ("facedet/evaluation/wider.py", "wider_iou"), ("facedet/cli_common.py", "nms_threshold_option")}
    found = []
    for rel, p in python_files():
        if rel.startswith("tests/"):
            continue  # oracles
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef) and re.search(r"iou|nms", node.name) and (rel, node.name) not in allowed:
                found.append(f"{rel}:{node.name}")
    assert found == []


def test_wider_iou_is_the_one_iou_with_plus_one():
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(0, 50, (20, 4)))
    g = np.round(rng.uniform(0, 50, (15, 4)))
    from facedet.evaluation.wider import wider_iou

    def xyxy(a):
        return np.hstack([a[:, :2], a[:, :2] + a[:, 2:]])

    assert np.array_equal(wider_iou(p, g), box_iou(xyxy(p), xyxy(g), plus_one=True))


def test_iou_and_nms_take_tensors_and_arrays_alike():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (60, 2))
    boxes = np.hstack([xy, xy + rng.uniform(1, 40, (60, 2))])
    scores = rng.uniform(0, 1, 60)
    t = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes))
    a = box_iou(boxes, boxes)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and np.array_equal(t.numpy(), a)
    assert box_iou(np.zeros((0, 4)), boxes).shape == (0, 60)
    keep_np = nms(boxes, scores, 0.3)
    keep_t = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3)
    assert isinstance(keep_np, np.ndarray) and keep_np.tolist() == keep_t.tolist()


def _string_constants(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_one_image_suffix_list():
    # The one list is facedet.imageio.IMAGE_SUFFIXES; detect.py's SAVE_IMAGE_SUFFIXES is a
    # different set (the formats --save writes back unchanged).
    allowed = {"facedet/imageio.py", "facedet/detect.py"}
    found = [rel for rel, p in python_files() if not rel.startswith("tests/") and rel not in allowed and ".jpeg" in set(_string_constants(p))]
    assert found == []


def test_one_image_reader():
    found = []
    for rel, p in python_files():
        if rel.startswith("tests/") or rel == "facedet/imageio.py":
            continue
        if re.search(r"cv2\.(imread|imdecode)\(", p.read_text()):
            found.append(rel)
    assert found == []


def test_training_defaults_have_one_source():
    """Every `facedet train` option that is a TrainConfig setting takes its default from TrainConfig."""
    from dataclasses import fields

    from facedet.training.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    tree = ast.parse((REPO / "facedet/training/cli.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "train_command")
    literal = []
    for arg, default in zip(fn.args.args[-len(fn.args.defaults):], fn.args.defaults):
        if arg.arg in names and isinstance(default, ast.Call) and default.args:
            first = default.args[0]
            if isinstance(first, ast.Constant) and first.value is not Ellipsis and first.value is not None:
                literal.append(arg.arg)
    assert literal == []
    import typer

    from facedet.cli import app

    cmd = typer.main.get_command(app).commands["train"]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for p in cmd.params:
        if p.name in defaults and p.name not in ("data", "root", "out"):
            assert p.default == defaults[p.name], p.name


# --------------------------------------------------------------------------- documentation


DOCS = ["README.md", "weights/README.md", "docs/evaluation.md", "docs/training.md", "docs/offline-dataset.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_docs_describe_the_product_not_its_history(doc):
    text = (REPO / doc).read_text()
    history = re.findall(r"\bstops? \d+\b|\bstages? \d+[a-z]?\b|\bthe default before\b|\brecipe \d\b|\bthen-shipped\b", text, flags=re.IGNORECASE)
    assert history == [], f"{doc}: {history} (history belongs in CHANGELOG.md)"


def test_changelog_keeps_the_history():
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## Earlier history" in text
    for fact in ("stage 4b", "runs/m4_v6_ft", "0.921", "4 min 26 s", "3 min 48 s", "set C0"):
        assert fact in text


def _bad_citations(text: str) -> list[str]:
    """Lines citing what is not in the repository: "reference notes", a bare "§x", an absolute path."""
    return [
        line.strip()
        for line in text.splitlines()
        if "reference notes" in line or "/work/" in line or ("§" in line and not re.search(r"docs/\S+\.md §", line))
    ]


def test_citations_resolve():
    """Docstrings and docs cite the paper or a document in the repository (docs/*.md §x is fine)."""
    bad = {}
    for rel, p in python_files():
        if rel != "tests/test_hygiene.py" and _bad_citations(p.read_text()):
            bad[rel] = _bad_citations(p.read_text())
    for doc in DOCS:
        if _bad_citations((REPO / doc).read_text()):
            bad[doc] = _bad_citations((REPO / doc).read_text())
    assert bad == {}
