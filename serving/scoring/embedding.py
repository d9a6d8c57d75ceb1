"""Scorers of the baseline recommenders (BPR-MF, CKE, KGAT, NFM, RippleNet), from served feature rows alone.

The formulas are plain torch functions so that the trained models compute their logits with the *same* code
(``predict_logits`` calls them), which is what makes a scorer equal its model. Inputs are float32 arrays with one row
per (user, item) pair; array-valued features arrive as 2-D arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from serving.scoring import register_scorer


def _tensor(values: object) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def dot_logits(user: Tensor, item: Tensor, item_bias: Tensor | None = None) -> Tensor:
    """⟨user, item⟩ (+ item bias) over the last dimension."""
    logits = (user * item).sum(dim=-1)
    return logits if item_bias is None else logits + item_bias


def mlp(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """ReLU MLP: ReLU after every layer."""
    for weight, bias in zip(weights, biases, strict=True):
        x = F.relu(F.linear(x, weight, bias))
    return x


def nfm_logits(
    user_sum: Tensor,
    user_square: Tensor,
    user_bias: Tensor,
    item_sum: Tensor,
    item_square: Tensor,
    item_bias: Tensor,
    weights: list[Tensor],
    biases: list[Tensor],
    head: Tensor,
    global_bias: Tensor,
) -> Tensor:
    """NFM: w0 + Σ w_i x_i + hᵀ MLP(½[(Σ x_i v_i)² - Σ (x_i v_i)²]), with the sums split into user and item parts."""
    total = user_sum + item_sum
    bi_interaction = 0.5 * (total * total - (user_square + item_square))
    return global_bias + user_bias + item_bias + mlp(bi_interaction, weights, biases) @ head


def ripple_logits(memory_rh: Tensor, memory_tail: Tensor, item: Tensor, transform: Tensor) -> Tensor:
    """RippleNet: per hop, p = softmax(vᵀRh) over the memory, o = Σ p t, v ← W(v + o); logit = vᵀ Σ_hops o.

    ``memory_rh`` / ``memory_tail``: (B, hops, memory, d) = R_r h and t of each user's ripple set; ``item``: (B, d).
    """
    v, outputs = item, []
    for hop in range(memory_rh.shape[1]):
        probs = torch.softmax((memory_rh[:, hop] * v.unsqueeze(1)).sum(dim=-1), dim=-1)
        o = (probs.unsqueeze(-1) * memory_tail[:, hop]).sum(dim=1)
        v = F.linear(v + o, transform)
        outputs.append(o)
    return (v * torch.stack(outputs).sum(dim=0)).sum(dim=-1)


@register_scorer("dot")
class DotScorer:
    """``embedding`` of user and item, dot product, plus the item's ``bias`` when ``item_bias``."""

    def __init__(self, item_bias: bool = False):
        self.item_bias = item_bias

    def score(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """Logits, shape (B,)."""
        bias = _tensor(item_rows["bias"]) if self.item_bias else None
        return dot_logits(_tensor(user_rows["embedding"]), _tensor(item_rows["embedding"]), bias).numpy()

    def prepare(self, item_columns: dict[str, np.ndarray]) -> DotCandidates:
        """The one-user form over a cached item table: one matrix-vector product per request."""
        return DotCandidates(item_columns, self.item_bias)


class DotCandidates:
    """⟨user, item⟩ (+ bias) of one user against the items at given positions; numpy: at 100 candidates half the
    cost of torch's index_select + matmul (its dispatch), the same at 1,000."""

    def __init__(self, item_columns: dict[str, np.ndarray], item_bias: bool):
        self.embedding = np.ascontiguousarray(item_columns["embedding"], dtype=np.float32)
        self.bias = np.asarray(item_columns["bias"], dtype=np.float32) if item_bias else None

    def score(self, user_rows: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
        """Logits, shape (B,)."""
        logits = self.embedding[index] @ np.asarray(user_rows["embedding"][0], dtype=np.float32)
        return logits if self.bias is None else logits + self.bias[index]


@register_scorer("nfm")
class NFMScorer:
    """Features ``fm_sum``, ``fm_square`` (d each) and ``fm_bias`` per user and item; state: MLP, head, global bias."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], head: np.ndarray, global_bias: float):
        self.weights = [_tensor(w) for w in weights]
        self.biases = [_tensor(b) for b in biases]
        self.head = _tensor(head)
        self.global_bias = _tensor(global_bias)

    def score(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """Logits, shape (B,)."""
        return nfm_logits(
            _tensor(user_rows["fm_sum"]),
            _tensor(user_rows["fm_square"]),
            _tensor(user_rows["fm_bias"]),
            _tensor(item_rows["fm_sum"]),
            _tensor(item_rows["fm_square"]),
            _tensor(item_rows["fm_bias"]),
            self.weights,
            self.biases,
            self.head,
            self.global_bias,
        ).numpy()


@register_scorer("ripplenet")
class RippleNetScorer:
    """User features ``memory_rh`` and ``memory_tail`` (flattened hops × memory × d); item feature ``embedding``."""

    def __init__(self, transform: np.ndarray, n_hop: int, n_memory: int):
        self.transform = _tensor(transform)
        self.n_hop, self.n_memory = n_hop, n_memory

    def score(self, user_rows: dict[str, np.ndarray], item_rows: dict[str, np.ndarray]) -> np.ndarray:
        """Logits, shape (B,)."""
        shape = (-1, self.n_hop, self.n_memory, self.transform.shape[0])
        return ripple_logits(
            _tensor(user_rows["memory_rh"]).reshape(shape),
            _tensor(user_rows["memory_tail"]).reshape(shape),
            _tensor(item_rows["embedding"]),
            self.transform,
        ).numpy()
