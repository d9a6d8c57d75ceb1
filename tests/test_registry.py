"""Registry contract: tracked runs with lineage, pyfunc packaging, publication to Feast, the promotion gate,
forced promotion with a reason, rollback, racing promotions, pruning, a service following the alias -- on the
embedded SQLite store, on a real ``mlflow server`` (SQLite backend) and on a real ``mlflow server`` whose tracking
and registry live in PostgreSQL (the team deployment of docs/DEPLOY.md; skipped, saying so, without PostgreSQL)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from graphrec.settings import REPO_ROOT, Settings
from graphrec.testing import mlflow_server, postgres_bin_dir, running_postgres, wait_until
from registry.promotion import AuditEntry, PromotionRefused, alias_history, audit_trail, promote, rollback
from registry.runs import lineage_fingerprint
from registry.servability import servability_problems
from registry.tracking import configure_mlflow
from registry.train import train_and_log
from registry.versions import list_versions, prune
from serving.contract import CHAMPION, FEATURE_SERVICE_TAG
from training.data.load import load_dataset
from training.models.base import MODELS, load_models

GOOD = {"epochs": 12, "lr": 0.02}
BAD = {"epochs": 1, "lr": 1e-7}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    """Run git in the repository; never raises on a git error (see the return code)."""
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def head_before_training() -> str | None:
    """The checkout's HEAD before any version is trained, or None when the repository is not a git checkout."""
    try:
        head = git("rev-parse", "HEAD")
    except OSError:  # no git executable
        return None
    return head.stdout.strip() if head.returncode == 0 else None


@pytest.fixture(scope="module", params=["sqlite", "server", "postgres"])
def registry_env(request, tmp_path_factory):
    """A synthetic dataset, a work dir, and the tracking store (embedded SQLite, a live mlflow server on SQLite, or
    a live mlflow server on a throwaway PostgreSQL cluster with a file artefact store)."""
    from training.synth.generator import SynthConfig, generate_dataset

    if request.param == "postgres" and postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the registry on PostgreSQL is skipped")
    root = tmp_path_factory.mktemp(f"registry-{request.param}")
    generate_dataset(SynthConfig(n_users=400, seed=5), root / "data")
    overrides: dict[str, object] = {
        "work_dir": root / "work",
        "dataset": str(root / "data"),
        "seed": 5,
        "registered_model_name": "graphrec-test",
    }
    if request.param == "server":
        with mlflow_server(root / "server") as uri:
            yield Settings(mlflow_tracking_uri=uri, **overrides)
    elif request.param == "postgres":
        with running_postgres() as database, mlflow_server(root / "server", backend_store_uri=database) as uri:
            yield Settings(mlflow_tracking_uri=uri, **overrides)
    else:
        yield Settings(**overrides)


def _train(settings: Settings, fields: dict, register: bool = True):
    load_models()
    configure_mlflow(settings)
    config = MODELS["bpr_mf"].Config(**fields)
    return train_and_log(settings, "bpr_mf", config, register_version=register, topk_users=50)


@pytest.fixture(scope="module")
def versions(registry_env, head_before_training: str | None):
    """Two registered versions: a trained one (v1) and a barely trained, worse one (v2), trained after
    ``head_before_training`` was read."""
    good = _train(registry_env, GOOD)
    bad = _train(registry_env, BAD)
    return registry_env, good, bad


def test_run_is_traced_to_data_features_and_code(versions, head_before_training: str | None) -> None:
    settings, good, _ = versions
    run = MlflowClient().get_run(good.run_id)
    assert run.data.params["model"] == "bpr_mf" and run.data.params["config.epochs"] == "12"
    assert {"test_auc", "test_auc/sparse", "test_recall_at_20/active", "valid_auc"} <= set(run.data.metrics)
    assert len(MlflowClient().get_metric_history(good.run_id, "valid_auc")) >= 2
    tags = run.data.tags
    data_fingerprint = load_dataset(settings).fingerprint
    assert tags["graphrec.input_files_fingerprint"] == data_fingerprint
    assert tags["graphrec.dataset_fingerprint"] == lineage_fingerprint(data_fingerprint, settings.seed)
    if head_before_training is None:
        assert tags["git_commit"] == "unknown"
    else:  # HEAD when trained: between the HEAD seen before training and now (equal to both when nobody commits)
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", tags["git_commit"]), tags["git_commit"]
        commit = tags["git_commit"].removesuffix("-dirty")
        assert git("merge-base", "--is-ancestor", head_before_training, commit).returncode == 0
        assert git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=good.run_id)}
    assert {"model_card.md", "plots", "serving_features"} <= artifacts
    plots = {a.path for a in mlflow.artifacts.list_artifacts(run_id=good.run_id, artifact_path="plots")}
    assert plots == {"plots/training_curve.png", "plots/metrics_by_tercile.png"}
    version = MlflowClient().get_model_version(settings.registered_model_name, good.version.version)
    assert version.tags[FEATURE_SERVICE_TAG] == f"graphrec_test_v{good.version.version}"


def test_signature_is_ids_plus_feature_service(versions) -> None:
    settings, good, _ = versions
    assert servability_problems(settings, settings.registered_model_name, good.version.version) == []
    info = mlflow.models.get_model_info(f"models:/{settings.registered_model_name}/{good.version.version}")
    assert info.signature.inputs.input_names()[:2] == ["user_id", "item_id"]


def test_pyfunc_loads_without_training_or_dgl(versions, tmp_path: Path) -> None:
    settings, good, _ = versions
    uri = f"models:/{settings.registered_model_name}/{good.version.version}"
    script = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('training', 'dgl'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri({settings.mlflow_uri!r}); mlflow.set_registry_uri({settings.mlflow_uri!r})
model = mlflow.pyfunc.load_model({uri!r})
frame = pd.DataFrame({{'user_id': [0, 1], 'item_id': [2, 3], 'user_embedding': [np.ones(64, 'float32')] * 2,
                      'item_embedding': [np.ones(64, 'float32')] * 2, 'item_bias': np.zeros(2, 'float32')}})
print(np.asarray(model.predict(frame)).round(3).tolist())
assert not any(m.split('.')[0] in ('training', 'dgl') for m in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[64.0, 64.0]" in result.stdout


def test_gate_promotes_good_and_refuses_worse(versions) -> None:
    settings, good, bad = versions
    name = settings.registered_model_name
    entry = promote(settings, name, good.version.version)
    assert entry.to_version == str(good.version.version) and "candidate" in entry.gate
    with pytest.raises(PromotionRefused, match=r"AUC 0\.\d+ is worse than champion v\d+ AUC 0\.\d+"):
        promote(settings, name, bad.version.version)
    assert MlflowClient().get_model_version_by_alias(name, CHAMPION).version == good.version.version


def test_a_running_service_follows_the_alias_through_the_gate(versions) -> None:
    """The service's poller binds whatever @champion names: a forced move to v2, then v1 promoted back through the
    metric gate, each followed without a restart, and each answered by the version the registry names."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    settings, good, bad = versions
    name, first, second = settings.registered_model_name, str(good.version.version), str(bad.version.version)
    promote(settings, name, first, force=True, reason="service baseline")
    service_settings = settings.model_copy(update={"serving_poll_interval_s": 0.1})
    with TestClient(create_app(service_settings)) as client:

        def serves(version: str) -> Callable[[], bool]:
            return lambda: client.get("/v1/model").json()["version"] == version

        wait_until(serves(first), 60, f"the service binding v{first}")
        promote(settings, name, second, force=True, reason="canary for the service")
        wait_until(serves(second), 60, f"the service following @champion to v{second}")
        answer = client.post("/v1/predict", json={"user_id": 0, "item_ids": [0, 1, 2]})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == second, answer.text
        entry = promote(settings, name, first)  # unforced: v1's AUC beats the champion's
        assert entry is not None and entry.action == "promote" and "candidate" in entry.gate
        wait_until(serves(first), 60, f"the service following @champion back to v{first}")
        answer = client.post("/v1/predict", json={"user_id": 0, "item_ids": [0, 1, 2]})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == first, answer.text


def test_force_needs_reason_and_is_recorded_then_rollback(versions) -> None:
    settings, good, bad = versions
    name = settings.registered_model_name
    promote(settings, name, good.version.version, force=True, reason="baseline")
    with pytest.raises(PromotionRefused, match="--reason"):
        promote(settings, name, bad.version.version, force=True)
    forced = promote(settings, name, bad.version.version, force=True, reason="canary of a cold-start fix")
    trail = audit_trail(MlflowClient(), name)
    assert trail[-1] == forced and trail[-1].reason == "canary of a cold-start fix" and trail[-1].action == "force"
    back = rollback(settings, name)
    assert back.to_version == str(good.version.version) and back.from_version == str(bad.version.version)
    assert MlflowClient().get_model_version_by_alias(name, CHAMPION).version == good.version.version
    assert audit_trail(MlflowClient(), name)[-1].action == "rollback"


def test_unpublished_version_is_refused(versions) -> None:
    settings, _, _ = versions
    outcome = _train(settings, BAD, register=False)
    version = mlflow.register_model(f"runs:/{outcome.run_id}/model", settings.registered_model_name)
    with pytest.raises(PromotionRefused, match="not servable"):
        promote(settings, settings.registered_model_name, version.version)


def test_unmaterialized_feature_service_is_refused(versions) -> None:
    from registry.publish import publish_version

    settings, _, _ = versions
    outcome = _train(settings, GOOD, register=False)
    version = mlflow.register_model(f"runs:/{outcome.run_id}/model", settings.registered_model_name)
    publish_version(
        settings, settings.registered_model_name, int(version.version), outcome.run_id, materialize_features=False
    )
    with pytest.raises(PromotionRefused, match="is not materialized"):
        promote(settings, settings.registered_model_name, version.version)


RACER = """
import sys
from graphrec.settings import Settings
from registry.promotion import promote
from registry.tracking import configure_mlflow
settings = Settings.model_validate_json(sys.argv[1])
configure_mlflow(settings)
promote(settings, sys.argv[2], sys.argv[3], force=True, reason="race " + sys.argv[3])
"""


def test_racing_promotions_leave_one_consistent_trail(versions) -> None:
    """Four processes promote two versions at once (each version twice): whatever the order, the trail is one chain
    of real moves from the champion before to the champion after, with no same-version entry."""
    settings, good, bad = versions
    name = settings.registered_model_name
    client = MlflowClient()
    before = str(client.get_model_version_by_alias(name, CHAMPION).version)
    recorded = len(audit_trail(client, name))
    contenders = [str(good.version.version), str(bad.version.version)] * 2
    command = [sys.executable, "-c", RACER, settings.model_dump_json(), name]
    racers = [subprocess.Popen([*command, version]) for version in contenders]
    assert [r.wait(timeout=180) for r in racers] == [0, 0, 0, 0]
    moves = audit_trail(client, name)[recorded:]
    after = str(client.get_model_version_by_alias(name, CHAMPION).version)
    assert moves, f"no racer moved champion away from v{before}"
    assert all(m.from_version != m.to_version for m in moves), moves
    assert [m.from_version for m in moves] == [before] + [m.to_version for m in moves[:-1]], moves
    assert moves[-1].to_version == after


def test_same_version_promote_is_a_noop_and_rollback_returns_to_the_previous_version(versions) -> None:
    """The issue's "2 -> 2" sequence: promote v1, v2, v2 again; rollback must land on v1, not stay on v2."""
    settings, good, bad = versions
    name = settings.registered_model_name
    first, second = str(good.version.version), str(bad.version.version)
    promote(settings, name, first, force=True, reason="baseline")
    promote(settings, name, second, force=True, reason="canary")
    recorded = len(audit_trail(MlflowClient(), name))
    assert promote(settings, name, second, force=True, reason="again") is None
    assert len(audit_trail(MlflowClient(), name)) == recorded
    back = rollback(settings, name)
    assert (back.from_version, back.to_version) == (second, first)
    assert str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version) == first


def test_alias_history_skips_same_version_moves_of_an_old_trail() -> None:
    def move(old: str | None, new: str, action: str = "promote") -> AuditEntry:
        return AuditEntry(CHAMPION, old, new, "tester", "2026-12-01T00:00:00+00:00", action)

    legacy = [move(None, "1"), move("1", "2"), move("2", "2"), move("2", "2", "rollback")]
    assert alias_history(legacy, CHAMPION) == ["1", "2"]
    assert alias_history([*legacy, move("2", "1", "rollback")], CHAMPION) == ["1"]
    assert alias_history([*legacy, move("2", "3"), move("3", "2", "rollback")], CHAMPION) == ["1", "2"]


def test_force_never_skips_servability(versions) -> None:
    settings, _, _ = versions
    outcome = _train(settings, BAD, register=False)
    version = mlflow.register_model(f"runs:/{outcome.run_id}/model", settings.registered_model_name)
    with pytest.raises(PromotionRefused, match="not servable: tags .* are missing"):
        promote(settings, settings.registered_model_name, version.version, force=True, reason="skip the gate")


def test_list_shows_champion_and_prune_keeps_aliases_and_rollback_targets(versions) -> None:
    """Champion v2 with v1 as its rollback target, newer unaliased versions after them: prune --keep 1 keeps the
    newest, the champion and the rollback target, says why, and deletes the rest with their features."""
    settings, good, bad = versions
    name = settings.registered_model_name
    first, second = str(good.version.version), str(bad.version.version)
    promote(settings, name, first, force=True, reason="pin for prune")
    promote(settings, name, second, force=True, reason="champion for prune")
    rows = list_versions(settings, name)
    assert next(r for r in rows if r.version == second).aliases == [CHAMPION]
    newest = max(int(r.version) for r in rows)
    assert newest > int(second) + 1, "earlier tests registered newer, unaliased versions"
    report = prune(settings, name, keep=1)
    assert report.kept == {
        str(newest): "one of the newest 1",
        second: "holds @champion",
        first: "rollback target of @champion",
    }
    remaining = {r.version for r in list_versions(settings, name)}
    assert remaining == set(report.kept) and report.deleted and not set(report.deleted) & remaining
    from feature_repo.model_views import load_manifest

    assert {e.version for e in load_manifest(settings.work_dir)} <= {int(v) for v in remaining}
    assert rollback(settings, name).to_version == first  # the target survived the prune


def test_ids_above_2_32_round_trip_through_publication_and_serving(store_settings) -> None:
    import numpy as np
    import pandas as pd

    from feature_repo.catalog import ValueType
    from featurestore.config import feature_store
    from registry.publish import publish_frames, value_type
    from serving.contract import ACTIVITY_TERCILE, SEEN_FEATURE
    from serving.features import FeatureReader
    from serving.pyfunc_model import column_values

    settings = store_settings()
    big = np.array([2**40 + 3, 2**32 + 1, -1])  # -1: padding, as KCAN and the seen view pad
    users = pd.DataFrame({"user_id": [0, 1], "nbr_id": [big, big[::-1].copy()], "repr": [np.ones(2, "float32")] * 2})
    items = pd.DataFrame({"item_id": [2**40 + 3, 7], "nbr_id": [big, big + 1]})
    seen = pd.DataFrame({"user_id": [0, 1], SEEN_FEATURE: [big, big], ACTIVITY_TERCILE: np.array([0, 2])})
    assert value_type(users["nbr_id"]) is ValueType.int64_list and value_type(users["repr"]) is ValueType.float32_list
    entry = publish_frames(settings, "ids-test", 1, users, items, seen)  # no longer refused above 2**24

    reader = FeatureReader(feature_store(settings))
    _, user_view, item_view = entry.names
    (seen_view,) = (spec.name for spec in entry.extra_specs())
    rows = reader.user_rows({user_view: ["nbr_id"], seen_view: [SEEN_FEATURE]}, 0)  # the service's one read
    assert rows[user_view]["nbr_id"].dtype == np.int64 and rows[user_view]["nbr_id"][0].tolist() == big.tolist()
    assert rows[seen_view][SEEN_FEATURE][0].tolist() == big.tolist()
    table = reader.item_table(item_view, ["nbr_id"])
    assert table.ids.tolist() == [7, 2**40 + 3]
    assert table.columns["nbr_id"].tolist() == [(big + 1).tolist(), big.tolist()]
    # the pyfunc's input columns (what every scorer receives) keep id arrays int64, exact
    assert column_values(users["nbr_id"]).tolist() == np.stack(users["nbr_id"]).tolist()


def test_processes_opening_a_fresh_sqlite_store_together_all_succeed(tmp_path: Path) -> None:
    """Three processes create the same experiment in one fresh SQLite store at once (two `graphrec tune` started
    together): before the store lock, two of three failed in MLflow's schema migration ("duplicate column name")."""
    script = (
        "import sys; from pathlib import Path; from graphrec.settings import Settings; "
        "from registry.tracking import ensure_experiment; "
        "print(ensure_experiment(Settings(work_dir=Path(sys.argv[1])), 'graphrec-together'))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "work")],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(child.wait(timeout=120), *child.communicate()) for child in children]
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-400:] for _, _, err in results]
    assert len({out.strip().splitlines()[-1] for _, out, _ in results}) == 1  # one experiment, created once
