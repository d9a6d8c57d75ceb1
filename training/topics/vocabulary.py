"""The topic vocabulary: the tokens kept for the documents, in a fixed order, and their indices."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Vocabulary:
    """Kept tokens in index order (most frequent first, ties alphabetical, so a rebuild gives the same indices)."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: pd.Series) -> np.ndarray:
        """Index of every token of ``tokens``; -1 for tokens outside the vocabulary."""
        return tokens.map(self.index).fillna(-1).to_numpy(dtype=np.int64)


def build_vocabulary(user_tokens: pd.DataFrame, min_users: int) -> Vocabulary:
    """The tokens that appear in at least ``min_users`` users' documents (``user_tokens``: columns user, token).

    Rare tags are dropped because a tag one user ever wrote says nothing shared about intent."""
    users_per_token = user_tokens.drop_duplicates(["user", "token"]).groupby("token").size()
    kept = users_per_token[users_per_token >= min_users]
    ordered = kept.reset_index(name="users").sort_values(["users", "token"], ascending=[False, True])
    return Vocabulary(tuple(ordered["token"].tolist()))
