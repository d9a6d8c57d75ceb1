"""Resumable training (training.resume): a fit of any trainable model killed mid-epoch or between epochs and resumed
from its state file ends with the same history and weights as an uninterrupted fit; a state written by another fit,
or a damaged file, is refused with an error naming the file and what differs; the state file is gone once the fit
ends."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import training.trainer as trainer
from cli.main import app
from graphrec.settings import Settings
from registry.train import resume_path
from tests.support.datasets import synthetic_dataset
from training.models.base import ModelConfig, TrainingData
from training.models.bpr_mf import BPRMFConfig
from training.models.cke import CKEConfig
from training.models.kcan import KCANConfig
from training.models.kgat import KGATConfig
from training.models.nfm import NFMConfig
from training.models.ripplenet import RippleNetConfig
from training.resume import ResumeError, load_state
from training.trainer import TrainResult, fit, fit_identity, prepare_data


class Killed(RuntimeError):
    """Stands for the process dying: raised from inside the training loop."""


def kill_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the trainer's optimiser step number ``step`` (1-based, counted over the whole fit) die before it runs."""
    calls = {"n": 0}
    minimise = trainer._minimise

    def dying(optimizer: object, loss: torch.Tensor) -> float:
        calls["n"] += 1
        if calls["n"] == step:
            raise Killed(f"killed at step {step}")
        return minimise(optimizer, loss)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer, "_minimise", dying)


def assert_same_fit(resumed: TrainResult, uninterrupted: TrainResult) -> None:
    """Same epochs (loss, validation AUC), same best epoch, same restored weights."""
    assert [(r.epoch, r.train_loss, r.valid_auc) for r in resumed.history] == [
        (r.epoch, r.train_loss, r.valid_auc) for r in uninterrupted.history
    ]
    assert resumed.best_epoch == uninterrupted.best_epoch
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@pytest.fixture(scope="module")
def kcan_data() -> TrainingData:
    return prepare_data(synthetic_dataset(n_users=30, n_items=24, n_attributes=8, positives=(2, 7)), seed=0)


CASES = {
    "bpr_mf": BPRMFConfig(dim=8, epochs=3, batch_size=32, patience=5),
    "cke": CKEConfig(dim=8, epochs=2, batch_size=32, patience=5),
    "kgat": KGATConfig(dim=8, epochs=2, batch_size=32, patience=5),  # per-epoch attention: a buffer in the state
    "nfm": NFMConfig(dim=8, epochs=2, batch_size=32, patience=5),
    "ripplenet": RippleNetConfig(dim=8, epochs=2, batch_size=32, patience=5),
    "kcan-sampled-sparse": KCANConfig(
        dim=8,
        top_k=3,
        epochs=2,
        batch_size=64,
        patience=5,
        propagation="sampled",
        fanouts=[3, 2],
        sparse_embeddings=True,
    ),
}


@pytest.mark.parametrize("where", ["epoch-boundary", "mid-epoch"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_killed_fit_resumes_to_the_uninterrupted_result(
    name: str,
    where: str,
    training_data: TrainingData,
    kcan_data: TrainingData,
    single_thread: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed at the first or the second step of epoch 2 (the state saved after every step), then resumed."""
    data = kcan_data if name.startswith("kcan") else training_data
    model_name = name.split("-")[0]
    config = CASES[name]
    steps_per_epoch = math.ceil(len(data.split.train) / config.batch_size)
    uninterrupted = fit(model_name, data, config, seed=3)
    state = tmp_path / "fit.state.pt"
    with monkeypatch.context() as patch:
        kill_at_step(patch, steps_per_epoch + (1 if where == "epoch-boundary" else 2))
        with pytest.raises(Killed):
            fit(model_name, data, config, seed=3, resume_path=state, save_every_s=0.0)
    saved = load_state(state, fit_identity(model_name, config, data, 3))
    assert saved.epoch == 2 and len(saved.history) == 1
    if where == "epoch-boundary":
        assert saved.order is None and saved.next_row == 0
    else:
        assert saved.order is not None and saved.next_row == config.batch_size and saved.epoch_batches == 1
    resumed = fit(model_name, data, config, seed=3, resume_path=state)
    assert_same_fit(resumed, uninterrupted)
    assert not state.exists()


def test_a_state_from_another_fit_is_refused_naming_what_differs(
    training_data: TrainingData, single_thread: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CASES["bpr_mf"]
    state = tmp_path / "fit.state.pt"
    with monkeypatch.context() as patch:
        kill_at_step(patch, 2)
        with pytest.raises(Killed):
            fit("bpr_mf", training_data, config, seed=3, resume_path=state, save_every_s=0.0)
    before = state.read_bytes()
    other = config.model_copy(update={"lr": config.lr * 2})
    with pytest.raises(ResumeError) as refused:
        fit("bpr_mf", training_data, other, seed=4, resume_path=state)
    message = str(refused.value)
    assert str(state) in message
    assert f"config.lr: {config.lr!r} there, {other.lr!r} here" in message
    assert "seed: 3 there, 4 here" in message
    assert state.read_bytes() == before  # the refused state is left as it was


def test_a_damaged_state_is_refused_naming_the_file(
    training_data: TrainingData, single_thread: None, tmp_path: Path
) -> None:
    state = tmp_path / "fit.state.pt"
    state.write_bytes(b"not a torch file")
    with pytest.raises(ResumeError, match=r"fit\.state\.pt: not a readable training state"):
        fit("bpr_mf", training_data, CASES["bpr_mf"], seed=3, resume_path=state)
    assert state.read_bytes() == b"not a torch file"


def test_data_parallel_workers_cannot_resume(training_data: TrainingData, tmp_path: Path) -> None:
    parallel = trainer.DataParallel(rank=0, world_size=2)
    with pytest.raises(ValueError, match="one process"):
        fit("bpr_mf", training_data, ModelConfig(), resume_path=tmp_path / "s.pt", parallel=parallel)


def test_graphrec_train_resume_refuses_a_damaged_state_and_leaves_none_after_a_fit(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """``graphrec train --resume``: a damaged state at its path is one error line naming the file (kept as it was);
    once that file is gone the same command trains, and leaves no state behind."""
    work = tmp_path / "work"
    config = tmp_path / "bpr_mf.yaml"
    config.write_text("dim: 8\nepochs: 2\nbatch_size: 64\n")
    args = ["--dataset", str(tiny_dir), "--work-dir", str(work), "train", "--model", "bpr_mf", "--seed", "5"]
    args += ["--config", str(config), "--resume", "--json"]
    state = resume_path(Settings(work_dir=work), "bpr_mf", "ctr", 5)
    state.parent.mkdir(parents=True)
    state.write_bytes(b"half a file")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert any(
        line.startswith(f"error: {state}: not a readable training state") for line in refused.stderr.splitlines()
    )
    assert "Traceback" not in refused.stdout + refused.stderr
    assert state.read_bytes() == b"half a file"
    note = f"continuing the unfinished fit saved in {state}"  # compared without spaces: rich wraps at 80 columns
    assert "".join(note.split()) in "".join(refused.stderr.split())
    state.unlink()
    trained = CliRunner().invoke(app, args)
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["epochs_run"] == 2
    assert not state.exists()


def test_graphrec_train_refuses_resume_with_workers(tiny_dir: Path, tmp_path: Path) -> None:
    args = ["--dataset", str(tiny_dir), "--work-dir", str(tmp_path), "train", "--model", "bpr_mf"]
    result = CliRunner().invoke(app, [*args, "--resume", "--workers", "2"])
    assert result.exit_code == 2
    assert "runs in one process" in result.stderr and "--resume" in result.stderr
