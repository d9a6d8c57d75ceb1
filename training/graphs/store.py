"""Save and load built graphs with their id maps, atomically, under the work dir."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.dataset import Dataset, replace_folder
from training.dgl_compat import dgl

GRAPH_FILE = "graphs.bin"
ID_MAP_FILE = "id_maps.json"


@dataclass
class IdMaps:
    """How graph node ids relate to the dataset: raw ids, node-space offsets, relation names, provenance."""

    dataset: str
    fingerprint: str
    n_users: int
    n_items: int
    n_entities: int
    user_node_offset: int
    relation_names: list[str]
    user_raw_ids: list[int] | None = None
    item_raw_ids: list[int] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: Dataset, relation_names: list[str], **extra: object) -> IdMaps:
        """The id maps of graphs built from ``dataset``."""
        return cls(
            dataset=dataset.name,
            fingerprint=dataset.fingerprint,
            n_users=dataset.n_users,
            n_items=dataset.n_items,
            n_entities=dataset.n_entities,
            user_node_offset=dataset.n_entities,
            relation_names=list(relation_names),
            user_raw_ids=None if dataset.user_raw_ids is None else np.asarray(dataset.user_raw_ids).tolist(),
            item_raw_ids=None if dataset.item_raw_ids is None else np.asarray(dataset.item_raw_ids).tolist(),
            extra=dict(extra),
        )


def save_graphs(folder: Path, graphs: dict[str, dgl.DGLGraph], id_maps: IdMaps) -> None:
    """Write named graphs and their id maps to ``folder``; an existing folder is replaced only on success."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        names = sorted(graphs)
        dgl.save_graphs(str(staging / GRAPH_FILE), [graphs[n] for n in names])
        payload = id_maps.__dict__ | {"graph_names": names}
        (staging / ID_MAP_FILE).write_text(json.dumps(payload))
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_graphs(folder: Path) -> tuple[dict[str, dgl.DGLGraph], IdMaps]:
    """Read graphs saved by :func:`save_graphs`."""
    folder = Path(folder)
    if not (folder / GRAPH_FILE).exists():
        raise FileNotFoundError(f"No graphs in {folder}: run `graphrec data graph` first.")
    payload = json.loads((folder / ID_MAP_FILE).read_text())
    names = payload.pop("graph_names")
    graphs, _ = dgl.load_graphs(str(folder / GRAPH_FILE))
    return dict(zip(names, graphs, strict=True)), IdMaps(**payload)
