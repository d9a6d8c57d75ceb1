"""The entity catalogue a version publishes for its explanations: what each CKG node is and what links two nodes.

Node ids are the collaborative knowledge graph's (docs/ARCHITECTURE.md §3): items ``0..n_items-1``, other KG entities
up to ``n_entities-1``, then users. Relation ids follow the CKG too: KG relations, their inverses, ``interact``
(user → item) and ``interacted_by``. The registry builds the catalogue at registration (registry/explain_tables.py)
and logs it with the version's run as three parquet files; the service reads it once per binding, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ENTITY_COLUMNS = ("node_id", "kind", "raw_id", "name")
KIND_ITEM, KIND_ENTITY, KIND_USER = "item", "entity", "user"
ENTITIES_FILE, RELATIONS_FILE, TRIPLES_FILE = "entities.parquet", "relations.parquet", "kg_triples.parquet"
FILES = (ENTITIES_FILE, RELATIONS_FILE, TRIPLES_FILE)
INTERACT, INTERACTED_BY = "interact", "interacted_by"


def relation_names(kg_names: list[str], n_relations: int) -> list[str]:
    """The CKG's relation names by id: KG relations, ``inverse:`` of each, ``interact``, ``interacted_by``."""
    names = list(kg_names) or [f"r{r}" for r in range(n_relations)]
    return names + [f"inverse:{n}" for n in names] + [INTERACT, INTERACTED_BY]


@dataclass(frozen=True)
class Catalogue:
    """Kinds, raw ids and names of CKG nodes (arrays by node id), relation names by id, and the KG's links."""

    kinds: np.ndarray  # (n_nodes,) object
    raw_ids: np.ndarray  # (n_nodes,) object
    names: np.ndarray  # (n_nodes,) object, None where the data has no name
    relations: tuple[str, ...]
    links: dict[tuple[int, int], int]  # (head, tail) -> the lowest KG relation id linking them

    @classmethod
    def from_frames(cls, entities: pd.DataFrame, relations: list[str], triples: pd.DataFrame) -> Catalogue:
        """Build from the entities table (node ids 0..n-1 in order), relation names and KG (head, relation, tail)."""
        entities = entities.sort_values("node_id")
        if not np.array_equal(entities["node_id"].to_numpy(), np.arange(len(entities))):
            raise ValueError("catalogue node ids must be 0..n-1 without gaps")
        links: dict[tuple[int, int], int] = {}
        ordered = triples.sort_values("relation", ascending=False)
        for head, relation, tail in ordered[["head", "relation", "tail"]].itertuples(index=False):
            links[(int(head), int(tail))] = int(relation)
        names = entities["name"].to_numpy(dtype=object)
        names = np.where(pd.isna(names), None, names)
        return cls(
            kinds=entities["kind"].to_numpy(dtype=object),
            raw_ids=entities["raw_id"].astype(str).to_numpy(dtype=object),
            names=names,
            relations=tuple(relations),
            links=links,
        )

    def __len__(self) -> int:
        return len(self.kinds)

    def kind(self, node: int) -> str | None:
        """The node's kind (None: not a node of this catalogue)."""
        return str(self.kinds[node]) if 0 <= node < len(self) else None

    def display_name(self, node: int) -> str:
        """The node's name where the data has one, else its kind and raw id (e.g. ``KG entity 4120``)."""
        if not 0 <= node < len(self):
            return f"node {node}"
        name = self.names[node]
        if name is not None:
            return str(name)
        label = {KIND_ITEM: "item", KIND_ENTITY: "KG entity", KIND_USER: "user"}.get(str(self.kinds[node]), "node")
        return f"{label} {self.raw_ids[node]}"

    def relation(self, centre: int, neighbour: int) -> str | None:
        """The relation linking a star's centre to a neighbour, read from the centre (None: unknown)."""
        kinds = self.kind(centre), self.kind(neighbour)
        if kinds[0] == KIND_USER and kinds[1] in (KIND_ITEM, KIND_ENTITY):
            return INTERACT
        if kinds[1] == KIND_USER:
            return INTERACTED_BY
        n_kg = (len(self.relations) - 2) // 2
        if (centre, neighbour) in self.links:
            return self.relations[self.links[(centre, neighbour)]]
        if (neighbour, centre) in self.links:
            return self.relations[self.links[(neighbour, centre)] + n_kg]
        return None

    def save(self, folder: Path) -> list[Path]:
        """Write the three parquet files into ``folder``; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        entities = pd.DataFrame(
            {
                "node_id": np.arange(len(self), dtype=np.int64),
                "kind": self.kinds,
                "raw_id": self.raw_ids,
                "name": pd.array(self.names, dtype="string"),
            }
        )
        entities.to_parquet(folder / ENTITIES_FILE, index=False)
        pd.DataFrame({"name": list(self.relations)}).to_parquet(folder / RELATIONS_FILE, index=False)
        pairs = np.asarray(list(self.links), dtype=np.int64).reshape(-1, 2)
        triples = pd.DataFrame(
            {
                "head": pairs[:, 0],
                "relation": np.asarray(list(self.links.values()), dtype=np.int64),
                "tail": pairs[:, 1],
            }
        )
        triples.to_parquet(folder / TRIPLES_FILE, index=False)
        return [folder / name for name in FILES]

    @classmethod
    def load(cls, folder: Path) -> Catalogue:
        """Read a catalogue written by :meth:`save`."""
        entities = pd.read_parquet(folder / ENTITIES_FILE)
        relations = pd.read_parquet(folder / RELATIONS_FILE)["name"].astype(str).tolist()
        return cls.from_frames(entities, relations, pd.read_parquet(folder / TRIPLES_FILE))
