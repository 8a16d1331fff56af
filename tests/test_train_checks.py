"""Training checks made before any work: resume settings, unreadable images, abandoned run folders."""

import pytest

from facedet import cli_common
from facedet.errors import FacedetError
from facedet.training.checkpoint import load_checkpoint
from facedet.training.trainer import train
from tests.test_train import cfg_for, invoke, make_faces


class Interrupt(Exception):
    pass


def test_resume_refuses_settings_that_differ_from_the_run(tmp_path):
    data = make_faces(tmp_path / "data", n=2, size=64)
    run = tmp_path / "run"
    common = ["--batch-size", 2, "--input-size", 64, "--val-split", 0, "--threads", 1, "--augment", "none"]
    r = invoke("--data", "generic", "--root", data, "--out", run, "--epochs", 1, *common)
    assert r.exit_code == 0, r.output
    for extra, message in ((["--epochs", 5], "--epochs 5 (the run has 1)"), (["--lr", 0.5], "--lr 0.5 (the run has 0.01)"), (["--arch", "qvga"], "--arch qvga (the run has m4)")):
        r = invoke("--out", run, "--resume", *extra)
        assert r.exit_code == 1, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --resume continues") and message in lines[0], r.output
    # the same values, and the settings that may change, are accepted
    r = invoke("--out", run, "--resume", "--epochs", 1, "--data", "generic", "--root", data, "--device", "cpu", "--threads", 1)
    assert r.exit_code == 0, r.output
    # the library call: only what the caller says it set is compared
    train(cfg_for(data, run, epochs=7), resume=True)
    with pytest.raises(FacedetError, match="--epochs 7"):
        train(cfg_for(data, run, epochs=7), resume=True, given={"epochs"})


def test_an_unreadable_image_stops_training_before_the_first_step(tmp_path, monkeypatch, capsys):
    data = make_faces(tmp_path / "data", n=4, size=64)
    (data / "images" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    monkeypatch.setattr(cli_common, "PLAIN_PROGRESS_SECONDS", 0.0)
    steps = []
    with pytest.raises(FacedetError, match=r"1 of 4 images of the training set cannot be read .*3\.png"):
        train(cfg_for(data, tmp_path / "run", epochs=1, batch_size=2, input_size=64), on_step=lambda it, loss: steps.append(it))
    assert steps == []
    assert "checking the training set: 1/4 image" in capsys.readouterr().err  # progress, as plain lines off a terminal


def test_a_run_that_dies_before_its_first_checkpoint_does_not_block_its_folder(tmp_path):
    data = make_faces(tmp_path / "data", n=2, size=64)
    run = tmp_path / "run"

    def die(it, loss):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg_for(data, run, epochs=1, batch_size=2, input_size=64), on_step=die)
    assert (run / "config.json").exists() and not (run / "last.pt").exists()
    with pytest.raises(FacedetError, match="nothing to resume"):
        train(cfg_for(data, run), resume=True)
    result = train(cfg_for(data, run, epochs=1, batch_size=2, input_size=64))  # no --force needed
    assert result.iterations == 1 and load_checkpoint(run / "last.pt")["iteration"] == 1
    # once it holds a checkpoint, the folder is protected again
    with pytest.raises(FacedetError, match="already holds a training run"):
        train(cfg_for(data, run, epochs=1, batch_size=2, input_size=64))
    # a config.json that is not a facedet run's is never replaced without --force
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"theme": "dark"}')
    with pytest.raises(FacedetError, match="already holds"):
        train(cfg_for(data, other, epochs=1, batch_size=2, input_size=64))
    assert (other / "config.json").read_text() == '{"theme": "dark"}'
