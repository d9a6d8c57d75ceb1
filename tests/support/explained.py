"""A small registered world for the explanation, seen-item and web-page tests: a seeded synthetic dataset, one KCAN
and one BPR-MF version trained briefly, registered through ``registry`` (so their seen-items view and entity
catalogue are published exactly as in production), KCAN promoted to @champion and BPR-MF to @challenger (forced,
with reasons, so the audit trail has records)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graphrec.settings import Settings

N_USERS = 120
KCAN_CONFIG = {"epochs": 2, "dim": 16, "top_k": 6, "batch_size": 256, "transh_batch_size": 256}
BPR_CONFIG = {"epochs": 2, "dim": 16, "batch_size": 256}


@dataclass(frozen=True)
class ExplainedWorld:
    """Settings of the world and the registered versions of each model."""

    settings: Settings
    kcan_version: str
    bpr_version: str


def explained_world(root: Path, kcan_config: dict[str, object] | None = None) -> ExplainedWorld:
    """Generate the dataset, train, register and alias both versions under ``root`` (``kcan_config`` overrides the
    small KCAN config: bench/serving.py serves one of the default width)."""
    import torch

    from registry.promotion import promote
    from registry.tracking import configure_mlflow
    from registry.train import train_and_log
    from serving.contract import CHALLENGER, CHAMPION
    from training.models.base import MODELS, load_models
    from training.synth.generator import SynthConfig, generate_dataset

    torch.set_num_threads(1)
    generate_dataset(SynthConfig(n_users=N_USERS, seed=3), root / "data")
    settings = Settings(
        work_dir=root / "work",
        dataset=str(root / "data"),
        seed=3,
        registered_model_name="graphrec-explain",
        serving_recommend_candidates=10_000,
    )
    configure_mlflow(settings)
    load_models()
    versions = {}
    for model, fields in (("kcan", KCAN_CONFIG | (kcan_config or {})), ("bpr_mf", BPR_CONFIG)):
        outcome = train_and_log(settings, model, MODELS[model].Config(**fields), register_version=True, topk_users=20)
        assert outcome.version is not None
        versions[model] = str(outcome.version.version)
    name = settings.registered_model_name
    promote(settings, name, versions["kcan"], CHAMPION, force=True, reason="explanation tests: KCAN first")
    promote(settings, name, versions["bpr_mf"], CHALLENGER, force=True, reason="a baseline beside it")
    return ExplainedWorld(settings, versions["kcan"], versions["bpr_mf"])
