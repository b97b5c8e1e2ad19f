"""The training command: the objective is VideoSys's, the outputs are complete, a resumed run is the same run."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.videosys

SMALL = ["--steps", "3", "--batch-size", "2", "--warmup", "1", "--threads", "1", "--no-progress"]


@pytest.fixture
def train():
    from magcache_videosys.testbed import train

    return train


def test_captions_take_the_pipelines_path_and_have_one_length(train):
    args = train.build_parser().parse_args(["--out", "unused", *SMALL])
    trainer = train.Trainer(train.settings_of(args))
    assert trainer.captions.shape == (144, 1, 300, 64)
    # "a {colour} {shape} moves {direction} on a {background} background aesthetic score: 6.5." + </s>
    assert set(trainer.caption_mask.sum(dim=1).tolist()) == {17}
    x0, kwargs = trainer.batch(4)
    assert x0.shape == (4, 4, 5, 12, 12)
    assert kwargs["height"].tolist() == [192.0] * 4 and kwargs["num_frames"].tolist() == [17.0] * 4


def test_caption_dropout_uses_the_null_embedding(train, monkeypatch):
    args = train.build_parser().parse_args(["--out", "unused", *SMALL])
    trainer = train.Trainer(train.settings_of(args))
    trainer.settings = dict(trainer.settings, caption_dropout=1.0)
    _, kwargs = trainer.batch(3)
    null = trainer.transformer.y_embedder.y_embedding
    assert all(torch.equal(y[0], null) for y in kwargs["y"])


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    from magcache_videosys.testbed.train import learning_rate

    settings = dict(lr=1e-3, warmup=10, steps=110)
    assert learning_rate(0, settings) == pytest.approx(1e-4)
    assert learning_rate(9, settings) == pytest.approx(1e-3)
    assert learning_rate(60, settings) == pytest.approx(0.55e-3)
    assert learning_rate(110, settings) == pytest.approx(1e-4)


def test_a_short_run_writes_everything_and_resuming_gives_the_same_weights(train, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    straight = tmp_path / "straight"
    assert train.main(["--out", str(straight), *SMALL]) == 0
    names = {p.name for p in straight.iterdir()}
    assert {"checkpoint.pt", "testbed.safetensors", "provenance.json", "loss.csv", "loss.png"} <= names
    provenance = json.loads((straight / "provenance.json").read_text())
    assert provenance["settings"]["steps"] == 3 and provenance["settings"]["seed"] == 0
    assert provenance["weights"]["bytes"] == (straight / "testbed.safetensors").stat().st_size
    assert provenance["final_loss"] > 0 and provenance["wall_time_s"] > 0 and provenance["cpu_share"] > 0
    assert provenance["machine"]["load_average_1min"]["samples"] == 1  # one checkpoint: at the last step
    assert {"torch", "transformers", "videosys"} <= set(provenance["versions"])
    assert provenance["task_geometry"]["travel"] == 0.5 and provenance["task_geometry"]["across"] == [0.45, 0.55]

    # Interrupted after the second step (checkpoints every step), then resumed with the same command.
    resumed = tmp_path / "resumed"
    original_step = train.Trainer.step

    def step_then_stop(self):
        if self.step_index == 2:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(train.Trainer, "step", step_then_stop)
    assert train.main(["--out", str(resumed), *SMALL, "--checkpoint-every", "1"]) == 130
    assert not (resumed / "testbed.safetensors").exists()
    monkeypatch.setattr(train.Trainer, "step", original_step)
    assert train.main(["--out", str(resumed), *SMALL, "--checkpoint-every", "1"]) == 0
    a, b = load_file(straight / "testbed.safetensors"), load_file(resumed / "testbed.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The same bytes, so the provenance's sha256 identifies the weights however the run went.
    assert (straight / "testbed.safetensors").read_bytes() == (resumed / "testbed.safetensors").read_bytes()
    assert json.loads((resumed / "provenance.json").read_text())["weights"] == provenance["weights"]
    losses = json.loads((resumed / "provenance.json").read_text())["final_loss"]
    assert losses == provenance["final_loss"]


def test_other_settings_do_not_resume_a_checkpoint(train, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--out", str(out), *SMALL]) == 0
    assert train.main(["--out", str(out), *SMALL[:2], "--batch-size", "3", *SMALL[4:]]) == 2
    assert "batch_size differ" in capsys.readouterr().err
