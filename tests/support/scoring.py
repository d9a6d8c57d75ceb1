"""What a serving scorer receives, built from a model's exported feature tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from serving.scoring import build_scorer
from training.models.base import Recommender, ServingExport


def served_rows(frame: pd.DataFrame, id_column: str, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The feature rows of ``ids`` as a scorer receives them: scalars 1-D, array features stacked 2-D."""
    rows = frame.set_index(id_column).loc[ids]
    return {column: np.stack(rows[column].to_numpy()) for column in rows.columns}


def assert_scorer_equals_model(model: Recommender, export: ServingExport, rows: pd.DataFrame) -> None:
    """The scorer built from ``export`` gives the model's ``predict_logits`` on the (user, item) ``rows`` (atol
    1e-5): the serving form's contract."""
    users, items = rows["user"].to_numpy(), rows["item"].to_numpy()
    scorer = build_scorer(export.scorer_kind, export.scorer_state)
    served = scorer.score(
        served_rows(export.user_features, "user_id", users), served_rows(export.item_features, "item_id", items)
    )
    with torch.no_grad():
        expected = model.predict_logits(torch.from_numpy(users), torch.from_numpy(items)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
