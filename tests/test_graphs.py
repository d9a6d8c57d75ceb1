"""Graph invariants: edge counts, inverse relations, training-only interaction edges, id maps, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.support.datasets import tiny_dataset
from training.data.splits import ctr_split
from training.graphs.ckg import build_ckg
from training.graphs.hetero import FRIEND, INTERACTED_BY, INTERACTS, KG_EDGE, build_hetero_graph
from training.graphs.store import IdMaps, load_graphs, save_graphs


def test_ckg_counts_and_inverses() -> None:
    dataset = tiny_dataset()
    positives = dataset.positives
    ckg = build_ckg(dataset, positives)
    n_kg, n_pos = len(dataset.kg), len(positives)
    assert len(ckg.triples) == 2 * n_kg + 2 * n_pos
    assert ckg.n_nodes == 8 + 6 and ckg.n_relations == 2 * 2 + 2
    kg = {tuple(t) for t in ckg.triples if t[1] < 2}
    inverse = {tuple(t) for t in ckg.triples if 2 <= t[1] < 4}
    assert inverse == {(t, r + 2, h) for h, r, t in kg}
    interact = ckg.triples[ckg.triples[:, 1] == ckg.interact_relation]
    assert set(map(tuple, interact[:, [0, 2]])) == set(zip(positives["user"] + 8, positives["item"], strict=True))
    assert ckg.relation_names[ckg.interact_relation] == "interact"
    assert ckg.relation_names[2] == "inverse:genre"


def test_ckg_never_contains_held_out_pairs() -> None:
    dataset = tiny_dataset()
    split = ctr_split(dataset.interactions, seed=1)
    ckg = build_ckg(dataset, split.train_positives())
    edges = set(map(tuple, ckg.triples[:, [0, 2]]))
    for part in (split.valid, split.test):
        for user, item in zip(part["user"], part["item"], strict=True):
            assert (user + dataset.n_entities, item) not in edges
            assert (item, user + dataset.n_entities) not in edges


def test_ckg_to_dgl_keeps_relations() -> None:
    ckg = build_ckg(tiny_dataset(), tiny_dataset().positives)
    graph = ckg.to_dgl()
    assert graph.num_nodes() == ckg.n_nodes and graph.num_edges() == len(ckg.triples)
    src, dst = graph.edges()
    assert torch.equal(src, torch.from_numpy(ckg.triples[:, 0]))
    assert torch.equal(graph.edata["rel"], torch.from_numpy(ckg.triples[:, 1]))


def test_hetero_graph_edge_types() -> None:
    dataset = tiny_dataset()
    graph = build_hetero_graph(dataset, dataset.positives)
    assert graph.num_nodes("user") == 6 and graph.num_nodes("entity") == 8
    assert graph.num_edges(INTERACTS) == graph.num_edges(INTERACTED_BY) == len(dataset.positives)
    assert graph.num_edges(KG_EDGE) == 2 * len(dataset.kg)
    assert graph.num_edges(FRIEND) == 2 * len(dataset.social)
    rel = graph.edges[KG_EDGE].data["rel"].numpy()
    assert set(rel) == {0, 1, 2, 3}
    src, dst = graph.edges(etype=FRIEND)
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert edges == {(b, a) for a, b in edges}


def test_save_load_round_trip(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    ckg = build_ckg(dataset, dataset.positives)
    graphs = {"ckg": ckg.to_dgl(), "hetero": build_hetero_graph(dataset, dataset.positives)}
    save_graphs(tmp_path / "g", graphs, IdMaps.of(dataset, list(ckg.relation_names), split_seed=3))
    loaded, id_maps = load_graphs(tmp_path / "g")
    assert set(loaded) == {"ckg", "hetero"}
    assert torch.equal(loaded["ckg"].edata["rel"], graphs["ckg"].edata["rel"])
    assert loaded["hetero"].canonical_etypes == graphs["hetero"].canonical_etypes
    assert id_maps.user_node_offset == 8 and id_maps.relation_names == list(ckg.relation_names)
    assert id_maps.extra == {"split_seed": 3}
    assert not list(tmp_path.glob(".g*"))  # no staging or backup folder left behind


def test_ckg_with_no_positives_is_pure_kg() -> None:
    dataset = tiny_dataset()
    ckg = build_ckg(dataset, dataset.positives.iloc[0:0])
    assert len(ckg.triples) == 2 * len(dataset.kg)
    assert np.all(ckg.triples[:, 1] < 4)
