"""Training: overfit a few synthetic faces, exact resume, checkpoints, CLI errors."""

import json

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from facedet.detector import build_model
from facedet.data.generic import read_generic
from facedet.errors import FacedetError
from facedet.evaluation.folder import evaluate_folder
from facedet.boxes import box_iou
from facedet.inference import Detector
from facedet.training.checkpoint import load_checkpoint, save_checkpoint
from facedet.training.cli import train_command
from facedet.training.schedule import lr_at, warmup_iterations
from facedet.training.sparsify import hard_threshold_, rnnpool_density, sparsify_rnnpool_
from facedet.training.trainer import TrainConfig, train
from facedet.training.validate import VAL_THRESHOLD, VAL_TOP_K, validate_ap
from facedet.weights import load_weights, training_summary


def make_faces(root, n=4, size=128, seed=0, val=False):
    """Synthetic generic data set: bright discs ("faces") on dark noise."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        faces = []
        for top in (0, size // 2):
            s = int(rng.integers(size // 6, size * 5 // 16))
            x = int(rng.integers(0, size - s))
            y = int(rng.integers(top, top + size // 2 - s))
            cv2.ellipse(img, (x + s // 2, y + s // 2), (s // 2, s // 2), 0, 0, 360, (200, 210, 230), -1)
            faces.append({"box": [x, y, x + s, y + s]})
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        images.append({"file": f"images/{i}.png", "width": size, "height": size, "faces": faces})
    doc = json.dumps({"format": "facedet-generic", "version": 1, "images": images})
    (root / "train.json").write_text(doc)
    if val:  # validate on the first image only (keeps the test fast)
        (root / "val.json").write_text(json.dumps({"format": "facedet-generic", "version": 1, "images": images[:1]}))
    return root


def cfg_for(data, out, **kw):
    base = dict(data="generic", root=str(data), out=str(out), arch="m4", epochs=40, batch_size=4, lr=0.01, input_size=128, augment="none", val_split=0.0, threads=1, checkpoint_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def test_overfit_detects_the_faces(tmp_path):
    data = make_faces(tmp_path / "data", val=True)
    # 100 steps: enough for batch-norm running statistics to settle (eval mode is tested)
    result = train(cfg_for(data, tmp_path / "run", epochs=100))
    hist = result.history
    assert hist[-1]["loss"] < 0.25 * hist[0]["loss"]
    assert all(h["val_ap50"] is not None for h in hist) and result.best_ap > 0
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    model = build_model("m4")
    model.load_state_dict(state["model"])
    detector = Detector(model)
    doc = json.loads((data / "train.json").read_text())
    for im in doc["images"]:
        det = detector.detect(cv2.imread(str(data / im["file"])), scale=1.0, threshold=0.3)
        gt = np.array([f["box"] for f in im["faces"]], float)
        assert len(det) >= 2
        assert (box_iou(gt, det.boxes).max(1) > 0.5).all()
    # best.safetensors is the shipped format, with a training summary
    _, meta = load_weights(tmp_path / "run" / "best.safetensors")
    summary = training_summary(meta)
    assert summary["data"] == "generic" and summary["epoch"] == result.best_epoch and summary["val_ap50"] == pytest.approx(result.best_ap)
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 100


@pytest.mark.parametrize("pyramid", [True, False])
def test_validation_scores_what_detect_does(tmp_path, pyramid):
    data = make_faces(tmp_path / "data", n=2, size=128, val=True)
    result = train(cfg_for(data, tmp_path / "run", epochs=3, batch_size=2, val_pyramid=pyramid))
    model = build_model("m4")
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "last.pt")["model"])
    val = read_generic(data / "val.json")
    # oracle: Detector.detect (what `facedet detect` runs) + the folder evaluator
    detector = Detector(model)
    preds = {}
    for a in val:
        d = detector.detect(cv2.imread(str(data / a.file)), threshold=VAL_THRESHOLD, pyramid=pyramid, top_k=VAL_TOP_K)
        preds[a.file] = (d.boxes, d.scores)
    oracle = evaluate_folder(val, preds).ap50
    other = validate_ap(model, val, data, pyramid=not pyramid)
    assert abs(oracle - other) > 1e-3  # the fixture tells the two modes apart
    assert validate_ap(model, val, data, pyramid=pyramid) == pytest.approx(oracle, abs=1e-9)
    assert result.history[-1]["val_ap50"] == pytest.approx(oracle, abs=1e-9)


def test_val_pyramid_option_and_old_configs(tmp_path):
    assert TrainConfig(data="generic", root="r", out="o").val_pyramid
    cfg = cfg_for(tmp_path, tmp_path / "o", val_pyramid=False)
    assert TrainConfig.from_dict(cfg.to_dict()).val_pyramid is False
    old = cfg_for(tmp_path, tmp_path / "o").to_dict()
    del old["val_pyramid"]  # a run saved before the option: it validated at one scale
    assert TrainConfig.from_dict(old).val_pyramid is False


class Interrupt(Exception):
    pass


def test_resume_is_exact(tmp_path):
    data = make_faces(tmp_path / "data", n=6, size=96)
    kw = dict(epochs=3, batch_size=2, augment="qvga", input_size=96, checkpoint_every=4, seed=7)
    full = train(cfg_for(data, tmp_path / "a", **kw))
    assert full.iterations == 9

    def kill_at_5(it, loss):
        if it == 5:  # the checkpoint of iteration 4 is the last one written
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg_for(data, tmp_path / "b", **kw), on_step=kill_at_5)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 4
    with pytest.raises(FacedetError, match="already holds a training run"):
        train(cfg_for(data, tmp_path / "b", **kw))
    resumed = train(cfg_for(data, tmp_path / "b", workers=0), resume=True)
    assert resumed.iterations == 9
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], rel=1e-6)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_finetune_with_sparsify(tmp_path):
    data = make_faces(tmp_path / "data", n=2, size=64)
    torch.manual_seed(0)
    src = tmp_path / "src.safetensors"
    from facedet.weights import save_weights

    save_weights(src, build_model("m4"))
    train(cfg_for(data, tmp_path / "ft", epochs=2, batch_size=2, input_size=64, finetune=str(src), sparsify=True))
    state = load_checkpoint(tmp_path / "ft" / "last.pt")
    model = build_model("m4")
    model.load_state_dict(state["model"])
    dens = rnnpool_density(model)
    assert dens["features.1.pool.rnn1.W"] == pytest.approx(0.5, abs=0.02)
    assert dens["features.1.pool.rnn2.U"] == pytest.approx(0.3, abs=0.02)
    with pytest.raises(FacedetError, match="holds 'm4' weights"):
        train(cfg_for(data, tmp_path / "ft2", arch="qvga", epochs=1, batch_size=2, input_size=64, finetune=str(src)))


def test_hard_threshold_keeps_the_largest():
    a = torch.arange(1.0, 11.0) * torch.tensor([1, -1] * 5)
    hard_threshold_(a, 0.3)
    assert a.tolist() == [0] * 7 + [-8, 9, -10]
    assert sparsify_rnnpool_(build_model("m4")) == 4


def test_schedule_warmup_then_cosine():
    assert warmup_iterations(5, 100, 30000) == 500
    assert warmup_iterations(5, 100, 1000) == 100  # capped at 10 % of the run
    assert lr_at(0, 0.01, 10, 100) == pytest.approx(0.001)
    assert lr_at(9, 0.01, 10, 100) == pytest.approx(0.01)
    assert lr_at(10, 0.01, 10, 100) == pytest.approx(0.01)
    assert lr_at(55, 0.01, 10, 100) == pytest.approx(0.005)
    assert lr_at(100, 0.01, 10, 100) == pytest.approx(0.0)


def test_checkpoint_atomic_and_safe(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "rng": {"torch": torch.get_rng_state()}})
    assert list(tmp_path.iterdir()) == [path]
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(2))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(FacedetError, match="not a readable"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- CLI


def cli():
    app = typer.Typer()
    app.command("train")(train_command)
    app.command("noop")(lambda: None)  # keep "train" a named subcommand
    return app


def invoke(*args):
    return CliRunner().invoke(cli(), ["train", *map(str, args)])


def one_line_error(res, pattern, code=1):
    assert res.exit_code == code, res.output
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert pattern in lines[0], lines[0]


def test_cli_errors(tmp_path):
    one_line_error(invoke("--data", "generic", "--root", tmp_path / "missing", "--out", tmp_path / "r"), "does not exist")
    one_line_error(invoke("--data", "coco", "--root", tmp_path, "--out", tmp_path / "r"), "unknown --data", code=2)  # usage errors
    one_line_error(invoke("--root", tmp_path, "--out", tmp_path / "r"), "--data and --root are required", code=2)
    one_line_error(invoke("--out", tmp_path / "r", "--resume"), "nothing to resume")
    one_line_error(invoke("--data", "wider", "--root", tmp_path, "--out", tmp_path / "r"), "wider_face_train_bbx_gt.txt")
    (tmp_path / "train.json").write_text('{"format": "facedet-generic", "version": 1, "images": [{"file": "a.jpg"}]}')
    one_line_error(invoke("--data", "generic", "--root", tmp_path, "--out", tmp_path / "r"), "images[0]: 'faces' must be a list")
    (tmp_path / "train.json").write_text('{"format": "facedet-generic", "version": 1, "images": [{"file": "a.jpg", "faces": [{"box": [1, 1, 9, 9]}]}]}')
    one_line_error(invoke("--data", "generic", "--root", tmp_path, "--out", tmp_path / "r"), "images of the training set are missing")


def test_cli_quick_run(tmp_path):
    data = make_faces(tmp_path / "data", n=2, size=64)
    res = invoke("--data", "generic", "--root", data, "--out", tmp_path / "run", "--epochs", 2, "--batch-size", 2, "--input-size", 64, "--val-split", 0.5, "--threads", 1)
    assert res.exit_code == 0, res.output
    assert "img/s" in res.output and "trained 2 iterations" in res.output  # 1 train image (batch lowered to 1) x 2 epochs
    one_line_error(invoke("--data", "generic", "--root", data, "--out", tmp_path / "run"), "already holds a training run")
    res = invoke("--out", tmp_path / "run", "--resume")
    assert res.exit_code == 0, res.output
