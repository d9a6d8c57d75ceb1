"""Loader for the Amazon Clothing + Sports cross-domain cold-start split (CDRIB, ICDE 2022), as one two-domain Dataset.

The folder (``../shared/data/amazon-cloth-sport``, see its SOURCE.md) holds ``cloth_sport/`` (Clothing) and
``sport_cloth/`` (Sports), each with ``train.txt``, ``valid.txt``, ``test.txt`` (``user item``, split ids) and the
full files ``new_reindex.txt`` / ``common_new_reindex.txt`` (``user item 1``, global ids). Construction:

- **Users.** The split files number users per domain: ids below C (the number of overlapping users) are the same
  person in both domains, ids from C up are *private to each domain* (Clothing 9828 and Sports 9828 are different
  people). C is not taken from the info files (``cloth_sport/sport_cloth_data_info.txt`` is stale: it says 9,928) but
  counted as the distinct users of ``common_new_reindex.txt``, and checked equal in both folders. graphrec's user id:
  overlapping users keep their split id; Clothing-only user k becomes k (k >= C); Sports-only user k becomes
  k + (Clothing's private users), so the two private ranges never meet.
- **Items.** Indexed per domain in the files; graphrec's item id is the Clothing id, or the Sports id plus the number
  of Clothing items. The interaction table's ``domain`` column says which (0 Clothing, 1 Sports).
- **Split.** The published one, kept as is: ``train.txt`` rows are training, ``valid.txt`` / ``test.txt`` rows the
  held-out rows of the domain's cold users (ids in one contiguous block below C per domain).
- **Labels.** Every row is a positive ("rated at all"); there are no negatives in the files. Negatives for
  evaluation are sampled by :mod:`training.crossdomain.evaluate` (the repository's sampler is not used: it excludes the
  user's own positives only for one of the four evaluation sets).

Validation names the file and line of every problem: a malformed row (via :func:`read_table`), a duplicate row, a
held-out row that is also a training row, a held-out user who has training rows in that domain (target leakage), a
held-out user who has no training row in the other domain (not the cold-start protocol), a held-out item that never
occurs in training, and a held-out user id that is not an overlapping user.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.data.dataset import Dataset, fingerprint_files
from training.data.errors import DataNotFoundError, DatasetError, Problem
from training.data.schema import Column, TableSpec
from training.data.splits import Split
from training.data.tables import read_table

AMAZON = "amazon"
AMAZON_FOLDER = "amazon-cloth-sport"
DOMAINS = ("clothing", "sports")
DOMAIN_FOLDERS = ("cloth_sport", "sport_cloth")  # SOURCE.md: folder A_B holds domain A's files
SPLIT_FILES = ("train.txt", "valid.txt", "test.txt")
COMMON_FILE = "common_new_reindex.txt"

_PAIRS = TableSpec(file="", columns=(Column("user"), Column("item")), header=False, key=("user", "item"), min_rows=1)
_COMMON = TableSpec(
    file="",
    columns=(Column("user"), Column("item"), Column("label", allowed=(1,))),
    header=False,
    key=("user", "item"),
    min_rows=1,
)


def amazon_files(folder: Path) -> list[Path]:
    """Every file the loader reads, in reading order."""
    return [folder / sub / name for sub in DOMAIN_FOLDERS for name in (*SPLIT_FILES, COMMON_FILE)]


def _read(path: Path, spec: TableSpec, problems: list[Problem]) -> pd.DataFrame:
    """One file through the shared validator, with the 1-based line of each row; problems are collected, not raised."""
    try:
        frame = read_table(path, spec)
    except DatasetError as exc:
        problems += exc.problems
        return pd.DataFrame({"user": [], "item": [], "line": []}, dtype=np.int64)
    return frame[["user", "item"]].assign(line=np.arange(1, len(frame) + 1))  # clean headerless file: row i = line i+1


def _overlap_count(folder: Path, problems: list[Problem]) -> int:
    """C, the number of users in both domains, counted in each folder's common file and required to agree."""
    counts = []
    for sub in DOMAIN_FOLDERS:
        common = _read(folder / sub / COMMON_FILE, _COMMON, problems)
        counts.append(int(common["user"].nunique()))
    if counts[0] != counts[1]:
        path = folder / DOMAIN_FOLDERS[1] / COMMON_FILE
        problems.append(Problem(path, None, None, f"{counts[1]} overlapping users here but {counts[0]} in Clothing's"))
    return counts[0]


def _where(path: Path, rows: pd.DataFrame, message: str) -> list[Problem]:
    """One problem per offending row, at its line."""
    return [Problem(path, int(line), None, message.format(user=u, item=i)) for u, i, line in rows.to_numpy()]


def _check_domain(
    folder: Path, domain: int, parts: list[pd.DataFrame], other_train: pd.DataFrame, overlap: int
) -> list[Problem]:
    """The cold-start protocol's rules for one domain's split files (see the module docstring)."""
    sub = folder / DOMAIN_FOLDERS[domain]
    train = parts[0]
    train_keys = _keys(train)
    train_users, train_items = set(train["user"]), set(train["item"])
    other_users = set(other_train["user"][other_train["user"] < overlap])
    problems: list[Problem] = []
    for name, held in zip(SPLIT_FILES[1:], parts[1:], strict=True):
        path = sub / name
        problems += _where(path, held[np.isin(_keys(held), train_keys)], "user {user} item {item} is also in train.txt")
        problems += _where(
            path,
            held[held["user"].isin(train_users).to_numpy()],
            "held-out user {user} has training rows in this domain (target-domain leakage)",
        )
        problems += _where(
            path, held[held["user"] >= overlap], f"user {{user}} is not an overlapping user (ids below {overlap})"
        )
        cold = held[(held["user"] < overlap) & ~held["user"].isin(other_users)]
        problems += _where(path, cold, "held-out user {user} has no training row in the other domain")
        problems += _where(path, held[~held["item"].isin(train_items)], "item {item} never occurs in train.txt")
    in_valid = np.isin(_keys(parts[2]), _keys(parts[1]))
    problems += _where(sub / SPLIT_FILES[2], parts[2][in_valid], "user {user} item {item} is also in valid.txt")
    return problems


def _keys(frame: pd.DataFrame) -> np.ndarray:
    """(user, item) pairs as one int64 each, for vectorised membership tests."""
    return frame["user"].to_numpy() * (1 << 32) + frame["item"].to_numpy()


def load_amazon(data_dir: Path) -> tuple[Dataset, Split]:
    """Load and validate the Amazon Clothing + Sports pair under ``data_dir`` (the folder holding
    ``amazon-cloth-sport/``, or that folder itself) as one Dataset with a ``domain`` column, and its published split.
    Raise :class:`DatasetError` naming the file and line of every problem, before anything is returned."""
    folder = Path(data_dir)
    if (folder / AMAZON_FOLDER).is_dir():
        folder = folder / AMAZON_FOLDER
    missing = [path for path in amazon_files(folder) if not path.exists()]
    if missing:
        raise DataNotFoundError(
            f"No Amazon Clothing + Sports data under {folder}: looked for {', '.join(str(p) for p in missing)}. "
            "Point --data at the folder holding amazon-cloth-sport/ (see its SOURCE.md)."
        )
    problems: list[Problem] = []
    overlap = _overlap_count(folder, problems)
    parts = [[_read(folder / sub / name, _PAIRS, problems) for name in SPLIT_FILES] for sub in DOMAIN_FOLDERS]
    if problems:
        raise DatasetError(problems)
    for domain in (0, 1):
        problems += _check_domain(folder, domain, parts[domain], parts[1 - domain][0], overlap)
    if problems:
        raise DatasetError(problems)
    return _assemble(folder, parts, overlap)


def _assemble(folder: Path, parts: list[list[pd.DataFrame]], overlap: int) -> tuple[Dataset, Split]:
    """The validated split files in graphrec's id spaces (module docstring): one table per part, domain column set."""
    all_rows = [pd.concat(domain_parts) for domain_parts in parts]
    n_private = [int(max(rows["user"].max() + 1, overlap) - overlap) for rows in all_rows]
    n_items = [int(rows["item"].max()) + 1 for rows in all_rows]
    user_shift = (0, n_private[0])
    item_shift = (0, n_items[0])

    def convert(frame: pd.DataFrame, domain: int) -> pd.DataFrame:
        user = frame["user"].to_numpy()
        return pd.DataFrame(
            {
                "user": np.where(user < overlap, user, user + user_shift[domain]),
                "item": frame["item"].to_numpy() + item_shift[domain],
                "label": 1,
                "domain": domain,
            }
        )

    tables = [pd.concat([convert(parts[d][p], d) for d in (0, 1)], ignore_index=True) for p in range(3)]
    interactions = pd.concat(tables, ignore_index=True)
    interactions["timestamp"] = 0  # the release drops timestamps; no temporal order exists
    interactions["weight"] = 1.0
    interactions = interactions[["user", "item", "label", "timestamp", "weight", "domain"]]
    n_users = overlap + sum(n_private)
    dataset = Dataset(
        name="amazon-cloth-sport",
        n_users=n_users,
        n_items=sum(n_items),
        n_entities=sum(n_items),
        n_relations=0,
        interactions=interactions,
        kg=pd.DataFrame({"head": [], "relation": [], "tail": []}, dtype=np.int64),
        social=pd.DataFrame({"user": [], "friend": []}, dtype=np.int64),
        domains=list(DOMAINS),
        fingerprint=fingerprint_files(amazon_files(folder)),
    )
    cols = list(interactions.columns)
    train, valid, test = (table.assign(timestamp=0, weight=1.0)[cols] for table in tables)
    return dataset, Split(train=train, valid=valid, test=test, protocol="topk")
