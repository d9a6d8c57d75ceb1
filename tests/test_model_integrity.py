"""Models without pickles (issue 10, item 1): the scorer is stored as JSON + a plain npz, every artefact's SHA-256 is
recorded at registration and checked before any load, and a tampered version is refused by the service and by the
gate without running anything planted in it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from graphrec.settings import Settings
from registry.promotion import PromotionRefused, promote
from serving.app import create_app
from serving.binding import ModelSource, NotServable
from serving.contract import CHAMPION
from serving.model_integrity import (
    DIGEST_TAG,
    DOWNLOAD_PREFIX,
    SCORER_FOLDER,
    folder_digests,
    remove_abandoned_downloads,
)
from serving.pyfunc_model import ITEM_ID
from serving.scorer_files import ARRAYS_FILE, SPEC_FILE, ScorerFileError, ScorerSpec, load_scorer, save_scorer
from tests.support.serving import PublishedVersion, dot_tables, popularity_table, publish_dot_version
from tests.support.tampering import TAMPERINGS, FileWritingPayload, plant, version_folder

N_USERS, N_ITEMS, DIM = 12, 20, 4
TOKEN = "integrity-token"


def nested_spec() -> ScorerSpec:
    """A spec whose state has every shape a scorer uses: arrays, lists of (weight, bias) pairs, scalars, dicts."""
    rng = np.random.default_rng(0)
    return ScorerSpec(
        kind="kcan",
        state={
            "attention": rng.normal(size=8).astype(np.float32),
            "user_tower": [(rng.normal(size=(2, 3)).astype(np.float32), np.zeros(2, np.float32))],
            "bias": np.float32(0.25),
            "gamma": 0.5,
            "conditional": True,
            "hops": 2,
            "extra": {"name": "x", "ids": np.arange(3, dtype=np.int64)},
        },
        user_features=("kcan_repr", "kcan_nbr_id"),
        item_features=("kcan_repr",),
    )


def test_scorer_round_trips_as_plain_data(tmp_path: Path) -> None:
    spec = nested_spec()
    folder = save_scorer(spec, tmp_path / "scorer")
    assert sorted(p.name for p in folder.iterdir()) == [SPEC_FILE, ARRAYS_FILE]
    loaded = load_scorer(folder)
    assert (loaded.kind, loaded.user_features, loaded.item_features) == (
        spec.kind,
        spec.user_features,
        spec.item_features,
    )
    state = loaded.state
    np.testing.assert_array_equal(state["attention"], spec.state["attention"])
    ((weight, bias),) = state["user_tower"]
    np.testing.assert_array_equal(weight, spec.state["user_tower"][0][0])
    np.testing.assert_array_equal(bias, spec.state["user_tower"][0][1])
    assert (state["bias"], state["gamma"], state["conditional"], state["hops"]) == (0.25, 0.5, True, 2)
    assert state["extra"]["name"] == "x" and state["extra"]["ids"].dtype == np.int64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([object()], dtype=object), "object array"),
        (float("nan"), "finite numbers only"),
        (object(), "store arrays, lists, dicts or scalars"),
    ],
)
def test_state_that_is_not_plain_data_is_refused(tmp_path: Path, value: object, message: str) -> None:
    spec = ScorerSpec(kind="dot", state={"weights": [value]}, user_features=(), item_features=())
    with pytest.raises(ScorerFileError, match=rf"'state\.weights\.0'.*{message}"):
        save_scorer(spec, tmp_path / "scorer")


def test_a_pickle_planted_in_the_arrays_never_runs(tmp_path: Path) -> None:
    folder = save_scorer(ScorerSpec("dot", {"weights": np.ones(2, np.float32)}, (), ()), tmp_path / "scorer")
    marker = tmp_path / "payload-ran"
    planted = np.empty(1, dtype=object)
    planted[0] = FileWritingPayload(marker)
    np.savez(folder / ARRAYS_FILE, allow_pickle=True, **{"state.weights": planted})
    with pytest.raises(ScorerFileError, match="not a plain-data npz"):
        load_scorer(folder)
    assert not marker.exists()
    with np.load(folder / ARRAYS_FILE, allow_pickle=True) as arrays:  # the payload is live: pickle loading runs it
        arrays["state.weights"]
    assert marker.exists()


def test_a_folder_without_a_spec_is_refused(tmp_path: Path) -> None:
    (tmp_path / "python_model.pkl").write_bytes(pickle.dumps(1))
    with pytest.raises(ScorerFileError, match="holds no scorer.json"):
        load_scorer(tmp_path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PublishedVersion]:
    """One published dot version holding @champion, and settings with an admin token."""
    settings = Settings(work_dir=tmp_path_factory.mktemp("integrity") / "work", serving_admin_token=TOKEN)
    users, items = dot_tables(N_USERS, N_ITEMS, DIM, seed=0)
    champion = publish_dot_version(settings, users, items, popularity_table(items[ITEM_ID].to_numpy(), seed=0))
    return settings, champion


@pytest.fixture(scope="module")
def client(world: tuple[Settings, PublishedVersion]) -> Iterator[TestClient]:
    """The app on the world, without the poller."""
    with TestClient(create_app(world[0], poll=False), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_logged_model_is_code_and_data_with_every_file_digested(world: tuple[Settings, PublishedVersion]) -> None:
    settings, champion = world
    folder = version_folder(settings.registered_model_name, champion.version)
    files = folder_digests(folder)
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    for path in files:  # no file starts with a pickle protocol header
        assert (folder / path).read_bytes()[:1] != b"\x80", path
    assert f"{SCORER_FOLDER.as_posix()}/{SPEC_FILE}" in files and "code/serving/scoring/embedding.py" in files
    tags = MlflowClient().get_model_version(settings.registered_model_name, champion.version).tags
    assert json.loads(tags[DIGEST_TAG]) == files


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_version_is_refused_by_service_and_gate_and_runs_nothing(
    world: tuple[Settings, PublishedVersion], client: TestClient, tmp_path: Path, how: str
) -> None:
    settings, champion = world
    name = settings.registered_model_name
    users, items = dot_tables(N_USERS, N_ITEMS, DIM, seed=1)
    tampered = publish_dot_version(settings, users, items, alias=None).version
    marker = tmp_path / "payload-ran"
    named = plant(version_folder(name, tampered), how, marker)

    with pytest.raises(NotServable, match=f"artefacts differ from those registered.*{named}"):
        ModelSource(settings.mlflow_uri).load(name, tampered)
    with pytest.raises(PromotionRefused, match=f"not servable.*{named}"):
        promote(settings, name, tampered, force=True, reason="tamper test")
    MlflowClient().set_registered_model_alias(name, CHAMPION, tampered)  # an attacker who can also move aliases
    try:
        reload = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reload.status_code == 503 and reload.json()["detail"] == "temporarily unavailable: NotServable"
        assert named in client.app.state.service.manager.last_error  # the reason readiness and the log report
        assert client.get("/v1/model").json()["version"] == champion.version  # the previous binding keeps serving
        assert client.post("/v1/predict", json={"user_id": 1, "item_ids": [1, 2]}).status_code == 200
    finally:
        MlflowClient().set_registered_model_alias(name, CHAMPION, champion.version)
    assert not marker.exists()


def test_a_version_without_digests_is_refused(world: tuple[Settings, PublishedVersion]) -> None:
    settings, _ = world
    name = settings.registered_model_name
    version = publish_dot_version(settings, *dot_tables(N_USERS, N_ITEMS, DIM, seed=2), alias=None).version
    MlflowClient().delete_model_version_tag(name, version, DIGEST_TAG)
    with pytest.raises(NotServable, match=f"no {DIGEST_TAG} tag"):
        ModelSource(settings.mlflow_uri).load(name, version)


def test_download_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(finished.stdout), os.getpid()
    abandoned = tmp_path / f"{DOWNLOAD_PREFIX}{dead}-abc"
    in_use = tmp_path / f"{DOWNLOAD_PREFIX}{alive}-def"
    unrelated = tmp_path / "graphrec-model-notes"
    for folder in (abandoned, in_use, unrelated):
        (folder / "model").mkdir(parents=True)
    remove_abandoned_downloads(tmp_path)
    assert (abandoned.exists(), in_use.exists(), unrelated.exists()) == (False, True, True)


def test_models_verify_passes_a_sound_version_and_refuses_a_tampered_one(
    world: tuple[Settings, PublishedVersion], tmp_path: Path
) -> None:
    settings, champion = world
    name = settings.registered_model_name
    base = ["--work-dir", str(settings.work_dir), "models", "verify"]
    sound = CliRunner().invoke(app, [*base, f"{name}/{champion.version}", "--json"])
    assert sound.exit_code == 0, sound.output
    report = json.loads(sound.stdout)
    assert report["version"] == champion.version and report["scorer"] == "dot" and report["files"] > 10
    tampered = publish_dot_version(settings, *dot_tables(N_USERS, N_ITEMS, DIM, seed=3), alias=None).version
    named = plant(version_folder(name, tampered), "code", tmp_path / "payload-ran")
    refused = CliRunner().invoke(app, [*base, f"{name}/{tampered}"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.startswith("refused: ") and named in refused.stderr


def test_api_docs_can_be_turned_off(world: tuple[Settings, PublishedVersion]) -> None:
    hidden = world[0].model_copy(update={"serving_api_docs": False})
    with TestClient(create_app(hidden, poll=False)) as test_client:
        assert [test_client.get(path).status_code for path in ("/openapi.json", "/docs", "/redoc")] == [404] * 3
        assert test_client.post("/v1/predict", json={"user_id": 1, "item_ids": [1]}).status_code == 200
