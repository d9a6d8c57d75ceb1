"""The only place graphrec imports DGL: ``from training.dgl_compat import dgl, fn, edge_softmax``.

DGL 2.1.0 (the newest Linux wheel) ships its GraphBolt C++ library only for torch 2.0-2.2, and ``import dgl`` dies on
torch 2.13 because ``dgl.graphbolt`` raises FileNotFoundError at import. graphrec never uses GraphBolt: the DGL core
(heterographs, ``update_all``, edge softmax, ``GATConv``, ``sample_neighbors``, ``to_block``, save/load) does not need
it. When the library for the running torch is missing, this module registers a placeholder ``dgl.graphbolt`` module
whose attributes raise a clear error, then imports DGL. When the library is present, DGL is imported untouched.
Serving never imports this module (serving does not depend on DGL at all).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import torch

os.environ.setdefault("DGLBACKEND", "pytorch")


class _GraphBoltUnavailable(types.ModuleType):
    """Stands in for ``dgl.graphbolt`` when its C++ library does not exist for this torch version."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"dgl.graphbolt.{name} is unavailable: DGL ships no GraphBolt library for torch {torch.__version__}. "
            "graphrec does not use GraphBolt; use the DGL core APIs instead."
        )


def graphbolt_library_present() -> bool:
    """Whether DGL's GraphBolt library for the running torch version is installed."""
    spec = importlib.util.find_spec("dgl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("DGL is not installed: run `make install` (graphrec pins dgl==2.1.0).")
    version = torch.__version__.split("+", maxsplit=1)[0]
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return (package_dir / "graphbolt" / f"libgraphbolt_pytorch_{version}.so").exists()


def _install_graphbolt_placeholder() -> None:
    if "dgl.graphbolt" not in sys.modules and not graphbolt_library_present():
        sys.modules["dgl.graphbolt"] = _GraphBoltUnavailable("dgl.graphbolt")


_install_graphbolt_placeholder()

import dgl  # noqa: E402  (must follow the placeholder)
import dgl.function as fn  # noqa: E402
from dgl.nn.functional import edge_softmax  # noqa: E402

__all__ = ["dgl", "fn", "edge_softmax", "graphbolt_library_present"]
