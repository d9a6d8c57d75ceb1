"""The one on-disk dataset format graphrec reads, and the raw files of the real datasets, as column specs.

A dataset folder (documented in docs/DATA_FORMAT.md) holds:

- ``dataset.json``      counts: n_users, n_items, n_entities, n_relations (+ optional names, domains)
- ``interactions.tsv``  user, item, label [, timestamp, weight, domain]
- ``kg.tsv``            head, relation, tail           (items are entities 0..n_items-1)
- ``social.tsv``        user, friend                   (undirected; one or both directions)
- ``tags.tsv``          user, item, tag, timestamp     (optional; tag is free text without tabs)

Every file is tab-separated with one header line. Ids are 0-based integers below the counts in dataset.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """The type of values a column holds."""

    int = "int"
    float = "float"
    text = "text"


@dataclass(frozen=True)
class Column:
    """One column: its name, type, whether it must be present, and which count bounds its ids (if any)."""

    name: str
    kind: Kind = Kind.int
    required: bool = True
    bound: str | None = None  # a key of dataset.json; ids must lie in [0, bound)
    allowed: tuple[int, ...] | None = None  # closed set of values (e.g. labels 0/1)


@dataclass(frozen=True)
class TableSpec:
    """One tab-separated file: its name, columns, whether it has a header, its duplicate key, the two columns that
    must differ on every row (no self-loops) and the fewest data rows it may hold."""

    file: str
    columns: tuple[Column, ...]
    header: bool = True
    key: tuple[str, ...] = ()
    optional_file: bool = False
    encoding: str = "utf-8"
    distinct: tuple[str, str] | None = None
    min_rows: int = 0

    @property
    def required_names(self) -> list[str]:
        """Names of the columns that must be present."""
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        """The spec of one column by name."""
        return next(c for c in self.columns if c.name == name)


META_FILE = "dataset.json"
COUNT_KEYS = ("n_users", "n_items", "n_entities", "n_relations")

INTERACTIONS = TableSpec(
    file="interactions.tsv",
    columns=(
        Column("user", bound="n_users"),
        Column("item", bound="n_items"),
        Column("label", allowed=(0, 1)),
        Column("timestamp", required=False),
        Column("weight", Kind.float, required=False),
        Column("domain", required=False),
    ),
    key=("user", "item"),
    min_rows=1,
)
KG = TableSpec(
    file="kg.tsv",
    columns=(
        Column("head", bound="n_entities"),
        Column("relation", bound="n_relations"),
        Column("tail", bound="n_entities"),
    ),
    key=("head", "relation", "tail"),
)
SOCIAL = TableSpec(
    file="social.tsv",
    columns=(Column("user", bound="n_users"), Column("friend", bound="n_users")),
    key=("user", "friend"),
    distinct=("user", "friend"),
)
TAGS = TableSpec(
    file="tags.tsv",
    columns=(
        Column("user", bound="n_users"),
        Column("item", bound="n_items"),
        Column("tag", Kind.text),
        Column("timestamp"),
    ),
    key=("user", "item", "tag"),
    optional_file=True,
)
DATASET_TABLES = (INTERACTIONS, KG, SOCIAL, TAGS)

# Raw files of the real Last.FM datasets (see ../shared/data/*/SOURCE.md).
LASTFM_RATINGS = TableSpec(
    file="lastfm-kg/ratings_final.txt",
    columns=(Column("user"), Column("item"), Column("label", allowed=(0, 1))),
    header=False,
    key=("user", "item"),
    min_rows=1,
)
LASTFM_KG = TableSpec(
    file="lastfm-kg/kg_final.txt",
    columns=(Column("head"), Column("relation"), Column("tail")),
    header=False,
    key=("head", "relation", "tail"),
)
LASTFM_ITEM_INDEX = TableSpec(
    file="lastfm-kg/item_index2entity_id.txt",
    columns=(Column("artist_id"), Column("entity")),
    header=False,
    key=("artist_id",),
)
LASTFM_KG_NAMES = TableSpec(
    file="lastfm-kg/kg.txt",
    columns=(Column("head"), Column("relation_name", Kind.text), Column("tail")),
    header=False,
)
HETREC_USER_ARTISTS = TableSpec(
    file="hetrec-lastfm-2k/user_artists.dat",
    columns=(Column("userID"), Column("artistID"), Column("weight")),
    key=("userID", "artistID"),
)
HETREC_FRIENDS = TableSpec(
    file="hetrec-lastfm-2k/user_friends.dat",
    columns=(Column("userID"), Column("friendID")),
    key=("userID", "friendID"),
)
HETREC_TAGGED = TableSpec(
    file="hetrec-lastfm-2k/user_taggedartists.dat",
    columns=(
        Column("userID"),
        Column("artistID"),
        Column("tagID"),
        Column("day"),
        Column("month"),
        Column("year"),
    ),
    key=("userID", "artistID", "tagID"),
)
HETREC_TAGS = TableSpec(
    file="hetrec-lastfm-2k/tags.dat",
    columns=(Column("tagID"), Column("tagValue", Kind.text)),
    key=("tagID",),
    encoding="iso-8859-1",
)
