"""The frozen evaluation set of the promotion gate, and scoring a registered version on it from its own features.

The set is stored once under ``<work_dir>/eval/`` (the test rows of the platform's seeded CTR split) with its
fingerprint, so every candidate and champion are compared on exactly the same rows, whatever happens to the data
later. Each version is scored by its verified model (serving.model_integrity), from the offline snapshot of its own
per-version feature views. Each row carries the name of its domain, so a version fixed to one domain of a two-domain
dataset (serving.contract.DOMAIN_TAG) is scored on that domain's rows (:func:`rows_of_domain`).
"""

from __future__ import annotations

import hashlib
import json

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from feature_repo.model_views import load_manifest
from graphrec.settings import Settings
from serving.model_integrity import load_verified_model
from serving.pyfunc_model import ITEM_ID, USER_ID, ScorerModel, column_values

EVAL_DIR = "eval"
EVAL_FILE = "frozen_eval.parquet"
DOMAIN = "domain"


def frozen_eval_set(settings: Settings) -> tuple[pd.DataFrame, str]:
    """The frozen rows (user_id, item_id, label) and their fingerprint, creating them on first use."""
    folder = settings.work_dir / EVAL_DIR
    path, meta_path = folder / EVAL_FILE, folder / "frozen_eval.json"
    if not path.exists():
        from training.data.load import load_dataset
        from training.data.splits import ctr_split

        dataset = load_dataset(settings)
        test = ctr_split(dataset.interactions, settings.seed).test
        rows = test.rename(columns={"user": USER_ID, "item": ITEM_ID})[[USER_ID, ITEM_ID, "label"]]
        names = [str(name) for name in dataset.domains]
        rows[DOMAIN] = [names[d] if d < len(names) else str(d) for d in test["domain"].to_numpy()]
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{EVAL_FILE}.tmp"
        rows.to_parquet(temporary, index=False)
        fingerprint = hashlib.sha256(temporary.read_bytes()).hexdigest()[:16]
        meta_path.write_text(json.dumps({"fingerprint": fingerprint, "dataset": dataset.name, "seed": settings.seed}))
        temporary.replace(path)
    fingerprint = json.loads(meta_path.read_text())["fingerprint"]
    if hashlib.sha256(path.read_bytes()).hexdigest()[:16] != fingerprint:
        raise RuntimeError(f"the frozen evaluation set {path} was modified: its fingerprint no longer matches")
    return pd.read_parquet(path), fingerprint


def rows_of_domain(rows: pd.DataFrame, domain: str | None) -> pd.DataFrame:
    """The frozen rows a version is scored on: all of them, or only those of ``domain`` for a version fixed to one
    domain; :class:`LookupError` when the set cannot say (written before rows carried a domain) or has none."""
    if domain is None:
        return rows
    if DOMAIN not in rows:
        raise LookupError(
            f"the frozen evaluation set predates per-domain rows, so it cannot score a version of domain {domain!r} "
            "(its rows carry no domain)"
        )
    picked = rows[rows[DOMAIN] == domain]
    if picked.empty:
        raise LookupError(
            f"the frozen evaluation set has no rows of domain {domain!r}; its domains: "
            + ", ".join(sorted(rows[DOMAIN].unique()))
        )
    return picked


def version_feature_tables(settings: Settings, name: str, version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest offline rows of a version's user and item feature views, indexed by id."""
    from featurestore.offline import read_latest

    entry = next(
        (e for e in load_manifest(settings.work_dir) if e.model == name and str(e.version) == str(version)), None
    )
    if entry is None:
        raise LookupError(f"{name} version {version} has no published feature views (register it first)")
    user_spec, item_spec = entry.view_specs()
    users = read_latest(settings.offline_dir, user_spec).set_index(USER_ID)
    return users, read_latest(settings.offline_dir, item_spec).set_index(ITEM_ID)


def score_pairs(model: ScorerModel, users: pd.DataFrame, items: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Logits of ``rows`` (user_id, item_id) from per-id feature tables."""
    user_rows = {f: column_values(users[f].reindex(rows[USER_ID].to_numpy())) for f in model.user_features}
    item_rows = {f: column_values(items[f].reindex(rows[ITEM_ID].to_numpy())) for f in model.item_features}
    return model.score_arrays(user_rows, item_rows)


def evaluate_version(settings: Settings, name: str, version: str, rows: pd.DataFrame) -> float:
    """AUC of a registered version on ``rows``, scored by its verified model from its own published features."""
    model = load_verified_model(MlflowClient(), mlflow.get_tracking_uri(), name, version)
    users, items = version_feature_tables(settings, name, version)
    known = rows[rows[USER_ID].isin(users.index) & rows[ITEM_ID].isin(items.index)]
    if len(known) < len(rows):
        raise LookupError(f"{name} v{version} lacks features for {len(rows) - len(known)} evaluation rows")
    return float(roc_auc_score(known["label"].to_numpy(), score_pairs(model, users, items, known)))
