"""What a serving scorer receives, built from a model's exported feature tables."""

from __future__ import annotations

import numpy as np
import pandas as pd


def served_rows(frame: pd.DataFrame, id_column: str, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The feature rows of ``ids`` as a scorer receives them: scalars 1-D, array features stacked 2-D."""
    rows = frame.set_index(id_column).loc[ids]
    return {column: np.stack(rows[column].to_numpy()) for column in rows.columns}
