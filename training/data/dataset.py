"""The in-memory dataset every loader returns, and reading/writing it in graphrec's on-disk format."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.errors import DataNotFoundError, DatasetError, Problem
from training.data.schema import COUNT_KEYS, DATASET_TABLES, INTERACTIONS, KG, META_FILE, SOCIAL, TAGS, TableSpec
from training.data.tables import decode_line, read_table


@dataclass
class Dataset:
    """Interactions, knowledge graph, social graph and optional tags, with ids already 0-based and validated.

    Items are entities ``0..n_items-1`` of the KG. ``social`` holds each undirected friendship once (user < friend).
    ``interactions.timestamp`` is Unix seconds, always present (loaders derive it when the source has none).
    """

    name: str
    n_users: int
    n_items: int
    n_entities: int
    n_relations: int
    interactions: pd.DataFrame
    kg: pd.DataFrame
    social: pd.DataFrame
    tags: pd.DataFrame | None = None
    relation_names: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    user_raw_ids: np.ndarray | None = None
    item_raw_ids: np.ndarray | None = None
    fingerprint: str = ""

    @property
    def positives(self) -> pd.DataFrame:
        """The interactions labelled 1."""
        return self.interactions[self.interactions["label"] == 1]

    def counts(self) -> dict[str, int]:
        """Headline counts, as printed by ``graphrec data stats``."""
        positives = self.positives
        return {
            "users": self.n_users,
            "items": self.n_items,
            "entities": self.n_entities,
            "relations": self.n_relations,
            "labelled rows": len(self.interactions),
            "positives": len(positives),
            "users with a positive": int(positives["user"].nunique()),
            "KG triples": len(self.kg),
            "friendships (undirected)": len(self.social),
            "tag assignments": 0 if self.tags is None else len(self.tags),
        }


def undirected_pairs(users: np.ndarray, friends: np.ndarray) -> pd.DataFrame:
    """Each undirected friendship once, as (min, max), sorted; self-loops dropped."""
    low, high = np.minimum(users, friends), np.maximum(users, friends)
    keep = low != high
    pairs = pd.DataFrame({"user": low[keep], "friend": high[keep]}).drop_duplicates()
    return pairs.sort_values(["user", "friend"]).reset_index(drop=True)


def fingerprint_files(paths: list[Path], extra: str = "") -> str:
    """A short SHA-256 over file contents (and an extra string such as a split seed): the dataset's identity."""
    digest = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _read_meta(folder: Path) -> tuple[dict, list[Problem]]:
    """dataset.json's content and what is wrong with it; counts are bound-checked only where they are valid."""
    path = folder / META_FILE
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is ignored, as in the tables
    except UnicodeDecodeError:
        lines = enumerate(raw.splitlines(), start=1)
        return {}, [problem for number, line in lines for problem in decode_line(line, number, path, "utf-8", [])[1]]
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, [Problem(path, exc.lineno, None, f"invalid JSON: {exc.msg} at character {exc.colno}")]
    if not isinstance(meta, dict):
        return {}, [Problem(path, 1, None, f"expected a JSON object with the counts, found {type(meta).__name__}")]
    problems = [
        Problem(path, _key_line(text, key), key, _count_message(meta, key))
        for key in COUNT_KEYS
        if not _is_count(meta.get(key))
    ]
    if not problems and meta["n_items"] > meta["n_entities"]:
        message = "items are entities, so n_items must be <= n_entities"
        problems.append(Problem(path, _key_line(text, "n_items"), "n_items", message))
    return meta, problems


def _is_count(value: object) -> bool:
    """A non-negative JSON integer; ``true``/``false`` are refused although Python counts bool as int."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count_message(meta: dict, key: str) -> str:
    """Why a count of dataset.json was refused, quoting the JSON value found."""
    if key not in meta:
        return "missing: a non-negative integer is required"
    return f"not a non-negative integer: {json.dumps(meta[key])}"


def _key_line(text: str, key: str) -> int:
    """The 1-based line of dataset.json where ``key`` is written, or 1 (the object) when it is absent."""
    return next((number for number, line in enumerate(text.splitlines(), 1) if f'"{key}"' in line), 1)


def _read_tables(folder: Path, bounds: dict[str, int]) -> tuple[dict[str, pd.DataFrame | None], list[Problem]]:
    """Every table of the folder that is there, and the problems of all of them together (not just the first)."""
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame | None] = {}
    for spec in DATASET_TABLES:
        path = folder / spec.file
        frames[spec.file] = None
        if spec.optional_file and not path.exists():
            continue
        try:
            frames[spec.file] = read_table(path, spec, bounds)
        except DatasetError as exc:
            problems += exc.problems
    return frames, problems


def load_dataset_dir(folder: Path) -> Dataset:
    """Read and validate a dataset folder in graphrec's format; raise DatasetError naming every bad record."""
    folder = Path(folder)
    missing = [spec.file for spec in (INTERACTIONS, KG, SOCIAL) if not (folder / spec.file).exists()]
    if not (folder / META_FILE).exists():
        missing.insert(0, META_FILE)
    if missing:
        raise DataNotFoundError(
            f"{folder} is not a graphrec dataset: missing {', '.join(missing)}. "
            "See docs/DATA_FORMAT.md, or generate one with `graphrec data synth --out DIR`."
        )
    meta, problems = _read_meta(folder)
    bounds = {key: meta[key] for key in COUNT_KEYS if _is_count(meta.get(key))}
    frames, table_problems = _read_tables(folder, bounds)
    if problems or table_problems:
        raise DatasetError(problems + table_problems)
    social = frames[SOCIAL.file]
    assert social is not None
    files = [folder / META_FILE] + [folder / s.file for s in DATASET_TABLES if (folder / s.file).exists()]
    return Dataset(
        name=str(meta.get("name", folder.name)),
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        n_entities=meta["n_entities"],
        n_relations=meta["n_relations"],
        interactions=_with_defaults(frames[INTERACTIONS.file]),
        kg=frames[KG.file],
        social=undirected_pairs(social["user"].to_numpy(), social["friend"].to_numpy()),
        tags=frames[TAGS.file],
        relation_names=list(meta.get("relation_names", [])),
        domains=list(meta.get("domains", [])),
        fingerprint=fingerprint_files(files),
    )


DEFAULT_SNAPSHOT_TS = 1_304_208_000  # 2011-05-01 00:00 UTC: HetRec 2011 release, the fixed snapshot time


def _with_defaults(interactions: pd.DataFrame) -> pd.DataFrame:
    """Fill the optional interaction columns so every consumer sees one shape."""
    frame = interactions.copy()
    if "timestamp" not in frame:
        frame["timestamp"] = DEFAULT_SNAPSHOT_TS
    if "weight" not in frame:
        frame["weight"] = 1.0
    if "domain" not in frame:
        frame["domain"] = 0
    return frame[["user", "item", "label", "timestamp", "weight", "domain"]]


def write_meta(folder: Path, dataset_counts: dict[str, int], **extra: object) -> None:
    """Write dataset.json with the four counts and any extra metadata (name, relation_names, domains)."""
    meta = {key: int(dataset_counts[key]) for key in COUNT_KEYS} | extra
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def write_table(frame: pd.DataFrame, path: Path, spec: TableSpec, append: bool = False) -> None:
    """Write one table in the format (tab-separated, header once); ``append`` adds rows without a header."""
    columns = [c.name for c in spec.columns if c.name in frame.columns]
    frame[columns].to_csv(path, sep="\t", index=False, header=not append, mode="a" if append else "w")


def write_dataset(dataset: Dataset, folder: Path) -> None:
    """Write ``dataset`` in graphrec's format, atomically: a temporary folder is renamed into place at the end."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_meta(
            staging,
            {
                "n_users": dataset.n_users,
                "n_items": dataset.n_items,
                "n_entities": dataset.n_entities,
                "n_relations": dataset.n_relations,
            },
            name=dataset.name,
            relation_names=dataset.relation_names,
            domains=dataset.domains,
        )
        write_table(dataset.interactions, staging / INTERACTIONS.file, INTERACTIONS)
        write_table(dataset.kg, staging / KG.file, KG)
        write_table(dataset.social, staging / SOCIAL.file, SOCIAL)
        if dataset.tags is not None:
            write_table(dataset.tags, staging / TAGS.file, TAGS)
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging: Path, target: Path) -> None:
    """Move a fully written staging folder onto ``target``; an existing target is kept until the move succeeds."""
    backup = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)
