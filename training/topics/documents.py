"""Per-user documents: the tags of the items a user interacted with plus the user's own tag assignments (and, behind
``kg_tokens``, the KG entities of those items), as a sparse user x token count matrix; items get their tag profile.

Only training positives join a user to an item, and tag rows on held-out (user, item) pairs are dropped everywhere:
on Last.FM a positive's timestamp comes from the user tagging the artist, so those rows would reveal the pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.data.dataset import Dataset
from training.topics.config import TopicConfig
from training.topics.errors import TopicInputError
from training.topics.vocabulary import Vocabulary, build_vocabulary

ITEM_TOKEN = "item:"
KG_TOKEN = "kg:"


@dataclass(frozen=True)
class Documents:
    """The bag-of-tokens inputs of the topic model and the skip-gram corpus they came from."""

    vocabulary: Vocabulary
    users: sp.csr_matrix  # (n_users, V) token counts of each user's document
    items: sp.csr_matrix  # (n_items, V) 1 where the token describes the item
    item_sentences: list[list[str]]  # skip-gram corpus: each item's profile tokens (an unordered set)...
    user_sentences: list[list[str]]  # ...and each user's own tags and consumed items ("item:<i>")

    @property
    def sentences(self) -> list[list[str]]:
        """The whole skip-gram corpus, items first."""
        return [*self.item_sentences, *self.user_sentences]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per user document."""
        return np.asarray(self.users.sum(axis=1)).ravel()


def tag_rows(dataset: Dataset, as_of: int | None = None, exclude_pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The dataset's tag assignments (user, item, tag) usable for documents: lower-cased, non-empty, not after
    ``as_of``, and not on an excluded (user, item) pair; raises TopicInputError when there are none."""
    if dataset.tags is None or dataset.tags.empty:
        raise TopicInputError(
            f"dataset {dataset.name!r} has no tag assignments (tags.tsv, docs/DATA_FORMAT.md): the intent topics are "
            "learnt from tags; use Last.FM or a `graphrec data synth` folder"
        )
    tags = dataset.tags.assign(tag=dataset.tags["tag"].astype(str).str.strip().str.lower())
    tags = tags[tags["tag"] != ""]
    if as_of is not None:
        tags = tags[tags["timestamp"] <= as_of]
    if exclude_pairs is not None and not exclude_pairs.empty:
        held = pd.MultiIndex.from_frame(exclude_pairs[["user", "item"]])
        tags = tags[~pd.MultiIndex.from_frame(tags[["user", "item"]]).isin(held)]
    if tags.empty:
        raise TopicInputError(f"dataset {dataset.name!r} has no usable tag assignments at or before the build time")
    return tags[["user", "item", "tag"]].reset_index(drop=True)


def item_profiles(tags: pd.DataFrame, per_item: int) -> pd.DataFrame:
    """(item, token): each item's ``per_item`` tags applied by the most users (ties alphabetical). One prolific
    tagger's private labels ('seen live', a name) would otherwise reach every document through the items."""
    counts = tags.drop_duplicates(["user", "item", "tag"]).groupby(["item", "tag"]).size().reset_index(name="users")
    ranked = counts.sort_values(["item", "users", "tag"], ascending=[True, False, True])
    return ranked.groupby("item").head(per_item)[["item", "tag"]].rename(columns={"tag": "token"})


def _kg_tokens(dataset: Dataset) -> pd.DataFrame:
    """(item, token) for every KG triple whose head is an item: the relation name and the tail entity."""
    kg = dataset.kg[dataset.kg["head"] < dataset.n_items]
    names = np.asarray(dataset.relation_names or [str(r) for r in range(dataset.n_relations)], dtype=object)
    token = KG_TOKEN + names[kg["relation"].to_numpy()] + ":" + kg["tail"].astype(str).to_numpy()
    return pd.DataFrame({"item": kg["head"].to_numpy(), "token": token}).drop_duplicates()


def _counts(frame: pd.DataFrame, key: str, vocabulary: Vocabulary, n_rows: int) -> sp.csr_matrix:
    """A (n_rows, V) count matrix of the (key, token) rows whose token is in the vocabulary."""
    column = vocabulary.encode(frame["token"])
    kept = column >= 0
    rows = frame[key].to_numpy()[kept]
    matrix = sp.coo_matrix(
        (np.ones(int(kept.sum()), dtype=np.float32), (rows, column[kept])), (n_rows, len(vocabulary))
    )
    return matrix.tocsr()  # duplicates summed


def build_documents(
    dataset: Dataset,
    positives: pd.DataFrame,
    config: TopicConfig,
    as_of: int | None = None,
    exclude_pairs: pd.DataFrame | None = None,
) -> Documents:
    """Documents of every user from training ``positives`` and the usable tag rows (see :func:`tag_rows`)."""
    tags = tag_rows(dataset, as_of, exclude_pairs)
    item_tokens = item_profiles(tags, config.item_tags)
    if config.kg_tokens:
        item_tokens = pd.concat([item_tokens, _kg_tokens(dataset)], ignore_index=True)
    via_items = positives[["user", "item"]].merge(item_tokens, on="item")[["user", "token"]]
    own = tags[["user", "tag"]].rename(columns={"tag": "token"})
    user_tokens = pd.concat([via_items, own], ignore_index=True)
    vocabulary = build_vocabulary(user_tokens, config.min_users)
    if len(vocabulary) == 0:
        raise TopicInputError(
            f"no tag is shared by {config.min_users} users' documents in dataset {dataset.name!r}: lower min_users"
        )
    item_groups = item_tokens.sort_values(["item", "token"]).groupby("item")["token"].apply(list)
    user_groups = pd.concat(
        [own, positives[["user", "item"]].assign(token=ITEM_TOKEN + positives["item"].astype(str))[["user", "token"]]]
    )
    user_groups = user_groups.drop_duplicates().sort_values(["user", "token"]).groupby("user")["token"].apply(list)
    return Documents(
        vocabulary=vocabulary,
        users=_counts(user_tokens, "user", vocabulary, dataset.n_users),
        items=(_counts(item_tokens, "item", vocabulary, dataset.n_items) > 0).astype(np.float32).tocsr(),
        item_sentences=item_groups.tolist(),
        user_sentences=user_groups.tolist(),
    )
