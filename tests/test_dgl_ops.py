"""The DGL operations graphrec relies on work on torch 2.13 through training.dgl_compat (GraphBolt absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.dgl_compat import dgl, edge_softmax, fn, graphbolt_library_present


def _graph() -> dgl.DGLGraph:
    return dgl.graph((torch.tensor([0, 1, 2, 2, 3]), torch.tensor([1, 2, 0, 3, 0])), num_nodes=4)


def test_backend_is_pytorch() -> None:
    assert os.environ["DGLBACKEND"] == "pytorch"
    assert dgl.backend.backend_name == "pytorch"


def test_update_all_sums_messages() -> None:
    graph = _graph()
    graph.ndata["h"] = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "out"))
    assert graph.ndata["out"].squeeze().tolist() == [3.0 + 4.0, 1.0, 2.0, 3.0]


def test_edge_softmax_normalises_over_in_edges() -> None:
    graph = _graph()
    weights = edge_softmax(graph, torch.randn(graph.num_edges(), 1))
    graph.edata["a"] = weights
    graph.update_all(fn.copy_e("a", "m"), fn.sum("m", "total"))
    assert torch.allclose(graph.ndata["total"].squeeze(), torch.ones(4))


def test_gatconv_forward_and_backward() -> None:
    from dgl.nn import GATConv

    layer = GATConv(5, 3, num_heads=2)
    out = layer(_graph(), torch.randn(4, 5, requires_grad=True))
    out.sum().backward()
    assert out.shape == (4, 2, 3)


def test_sample_neighbors_and_to_block() -> None:
    graph = _graph()
    sampled = dgl.sampling.sample_neighbors(graph, torch.tensor([0]), fanout=1)
    assert sampled.num_edges() == 1
    block = dgl.to_block(sampled, dst_nodes=torch.tensor([0]))
    assert block.num_dst_nodes() == 1 and block.num_src_nodes() == 2


def test_heterograph_save_load(tmp_path: Path) -> None:
    graph = dgl.heterograph({("user", "clicks", "item"): (torch.tensor([0, 1]), torch.tensor([1, 1]))})
    dgl.save_graphs(str(tmp_path / "g.bin"), [graph])
    (loaded,), _ = dgl.load_graphs(str(tmp_path / "g.bin"))
    assert loaded.num_edges("clicks") == 2


def test_graphbolt_placeholder_explains_itself() -> None:
    if graphbolt_library_present():
        pytest.skip("this DGL build has GraphBolt for the running torch")
    from dgl import graphbolt

    with pytest.raises(ImportError, match="graphrec does not use GraphBolt"):
        graphbolt.FusedCSCSamplingGraph  # noqa: B018


def test_plain_import_dgl_fails_without_the_compat_module() -> None:
    """Documents why the compat module exists: the bare import dies on this torch."""
    if graphbolt_library_present():
        pytest.skip("this DGL build has GraphBolt for the running torch")
    result = subprocess.run([sys.executable, "-c", "import dgl"], capture_output=True, text=True)
    assert result.returncode != 0 and "graphbolt" in result.stderr
