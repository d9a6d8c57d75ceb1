"""The graph job: load the configured dataset, split it, build both graphs from training positives, save them."""

from __future__ import annotations

from pathlib import Path

from graphrec.settings import Settings
from training.data.load import load_dataset
from training.data.splits import ctr_split
from training.dgl_compat import dgl
from training.graphs.ckg import build_ckg
from training.graphs.hetero import build_hetero_graph
from training.graphs.store import IdMaps, save_graphs

CKG, HETERO = "ckg", "hetero"


def build_and_save_graphs(settings: Settings) -> tuple[Path, dict[str, dgl.DGLGraph]]:
    """Build the CKG and heterograph of the platform split (seeded 6:2:2) and save them with id maps."""
    dataset = load_dataset(settings)
    split = ctr_split(dataset.interactions, settings.seed)
    positives = split.train_positives()
    ckg = build_ckg(dataset, positives)
    graphs = {CKG: ckg.to_dgl(), HETERO: build_hetero_graph(dataset, positives)}
    id_maps = IdMaps.of(dataset, list(ckg.relation_names), split="ctr", split_seed=settings.seed)
    save_graphs(settings.graphs_dir, graphs, id_maps)
    return settings.graphs_dir, graphs
