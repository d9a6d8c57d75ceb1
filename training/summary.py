"""The dataset summary printed by ``graphrec data stats`` and the demo: counts, activity skew, graph sizes."""

from __future__ import annotations

import numpy as np

from graphrec.settings import Settings
from training.data.load import load_dataset
from training.data.splits import TERCILE_NAMES, activity_terciles, ctr_split
from training.graphs.ckg import build_ckg


def dataset_summary(settings: Settings) -> dict[str, dict[str, object]]:
    """Sections of label -> value describing the configured dataset and its training graphs."""
    dataset = load_dataset(settings)
    split = ctr_split(dataset.interactions, settings.seed)
    positives = split.train_positives()
    per_user = np.bincount(positives["user"].to_numpy(), minlength=dataset.n_users)
    terciles = activity_terciles(positives, dataset.n_users)
    ckg = build_ckg(dataset, positives)
    activity: dict[str, object] = {
        "median training positives per user": float(np.median(per_user)),
        "99th percentile": float(np.percentile(per_user, 99)),
        "max": int(per_user.max(initial=0)),
    }
    for tercile, name in enumerate(TERCILE_NAMES):
        members = per_user[terciles == tercile]
        activity[f"{name} tercile: users / mean positives"] = f"{len(members):,} / {members.mean():.1f}"
    return {
        f"dataset {dataset.name} ({dataset.fingerprint})": dataset.counts(),
        f"split ctr 6:2:2 seed {settings.seed}": {
            "train rows": len(split.train),
            "valid rows": len(split.valid),
            "test rows": len(split.test),
        },
        "user activity (training positives)": activity,
        "collaborative knowledge graph": {
            "nodes": ckg.n_nodes,
            "edges (with inverses)": len(ckg.triples),
            "relations (with inverses)": ckg.n_relations,
        },
    }
