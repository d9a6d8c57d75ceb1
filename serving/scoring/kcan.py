"""KCAN's online half (docs/ARCHITECTURE.md §3, steps 4-5): conditional attention over two distilled stars, then
two towers.

Steps 1-3 (TransH, knowledge-aware propagation, top-k distillation) are target-independent and are served as
per-entity features: ``kcan_node_id`` (the entity's CKG node id), ``kcan_repr`` (d), ``kcan_nbr_repr`` (k·d, the top-k
neighbours' representations flattened), ``kcan_nbr_alpha`` (k, their knowledge-aware α, 0 for padding) and
``kcan_nbr_id`` (k, their node ids, -1 for padding). For a pair (u, v), v is masked out of u's star and u out of v's
star — the same rule as in training, so the label edge never informs its own score.

The formulas are plain torch functions: the trained model (``training.models.kcan``) computes its logits with this
very code, which is what makes the scorer (``serving.scoring.kcan_scorer``) equal the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

NEGATIVE_SLOPE = 0.2


@dataclass(frozen=True)
class Star:
    """A batch of distilled stars: centre node ids (B,), centre representations (B, d), neighbours (B, k, ...)."""

    node_id: Tensor  # (B,) int64
    centre: Tensor  # (B, d)
    nbr_id: Tensor  # (B, k) int64, -1 = padding
    nbr_repr: Tensor  # (B, k, d)
    nbr_alpha: Tensor  # (B, k), 0 for padding
    bias: Tensor | None = None  # (B,) the centre's own logit offset (items' popularity), None: none

    def kept(self, target: Tensor) -> Tensor:
        """(B, k) bool: real neighbours other than ``target`` (B,), the other end of the scored pair."""
        return (self.nbr_id >= 0) & (self.nbr_id != target.unsqueeze(1))


@dataclass(frozen=True)
class HeadWeights:
    """Parameters of steps 4-5: attention vector a (4d, or d' with a transform; with ``bilinear``, (1,) the logit
    scale), refinement W_c (d, d), towers (Linear layers), bias; ``attention_transform`` W (d', 4d) makes the attention
    GATv2-style, or with ``bilinear`` a query-key match (None: the paper's form)."""

    attention: Tensor
    refine: Tensor
    user_tower: list[tuple[Tensor, Tensor]]
    item_tower: list[tuple[Tensor, Tensor]]
    bias: Tensor
    attention_transform: Tensor | None = None
    centre_dot: bool = False  # add ⟨x_u, x_v⟩ of the star centres to the towers' product (a residual MF channel)
    bilinear: bool = False  # e_ij = s·⟨W_q[h_u‖h_v‖x_i], W_k x_j⟩ (needs ``attention_transform``; ``attention`` = s)


def masked_normalise(weights: Tensor, mask: Tensor) -> Tensor:
    """Weights zeroed outside ``mask`` and rescaled to sum to 1 per row (all-zero rows stay zero)."""
    weights = weights * mask
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def conditional_attention(
    star: Star,
    h_user: Tensor,
    h_item: Tensor,
    attention: Tensor,
    kept: Tensor,
    transform: Tensor | None = None,
    bilinear: bool = False,
) -> Tensor:
    """β_ij = softmax_j e_ij over the kept neighbours j of each centre i; (B, k).

    Without ``transform``, the paper's e_ij = LeakyReLU(aᵀ[h_u‖h_v‖x_i‖x_j]): the pair enters as a constant inside a
    monotone function, so every target ranks the neighbours alike ("static" attention). With ``transform`` W,
    e_ij = aᵀ LeakyReLU(W[h_u‖h_v‖x_i‖x_j]) (GATv2, Brody et al. 2022): the ranking of neighbours depends on the pair.
    With ``bilinear`` too, e_ij = s·⟨W_q[h_u‖h_v‖x_i], W_k x_j⟩ (W = [W_q‖W_k] by blocks, s = ``attention``, a
    scalar): a query from the pair matched against each neighbour, so a user's neighbours that resemble the target
    item weigh most (the target attention of DIN, Zhou et al. 2018), the dependence GATv2 can only approximate.
    W is applied blockwise, so the pair's part is computed once per row and only W_n x_j per neighbour.
    """
    d = h_user.shape[-1]
    if transform is None:
        a_user, a_item, a_centre, a_nbr = attention.split(d)
        constant = h_user @ a_user + h_item @ a_item + star.centre @ a_centre
        logits = F.leaky_relu(constant.unsqueeze(1) + star.nbr_repr @ a_nbr, NEGATIVE_SLOPE)
    else:
        w_user, w_item, w_centre, w_nbr = transform.split(d, dim=1)
        constant = h_user @ w_user.T + h_item @ w_item.T + star.centre @ w_centre.T  # (B, d')
        logits = pair_neighbour_logits(constant, star.nbr_repr @ w_nbr.T, attention, bilinear)
    beta = torch.softmax(logits.masked_fill(~kept, -torch.inf), dim=-1)
    return torch.nan_to_num(beta, nan=0.0)  # a star left empty (e.g. its only edge was the target) gets no weight


def pair_neighbour_logits(constant: Tensor, nbr_term: Tensor, attention: Tensor, bilinear: bool) -> Tensor:
    """e_ij of the transformed forms from the pair's part ``constant`` (B, d') and the neighbours' W_n x_j
    (B or 1, k, d'): s·⟨constant, W_n x_j⟩ (bilinear) or aᵀ LeakyReLU(constant + W_n x_j) (GATv2); (B, k)."""
    if bilinear:
        return (constant.unsqueeze(1) * nbr_term).sum(dim=-1) * attention
    return F.leaky_relu(constant.unsqueeze(1) + nbr_term, NEGATIVE_SLOPE) @ attention


def refine(star: Star, kept: Tensor, beta: Tensor | None, gamma: float, refine_weight: Tensor) -> Tensor:
    """Target-specific representation LeakyReLU(W_c Σ_j w_j x_j + x_i), w = γβ + (1-γ)α̃ (α̃: α renormalised on kept).

    With ``beta`` None (conditional attention off) w = α̃: the distilled star aggregated target-independently.
    """
    weights = masked_normalise(star.nbr_alpha, kept)
    if beta is not None:
        weights = gamma * beta + (1.0 - gamma) * weights
    aggregated = (weights.unsqueeze(-1) * star.nbr_repr).sum(dim=1)
    return F.leaky_relu(aggregated @ refine_weight.T + star.centre, NEGATIVE_SLOPE)


def tower(x: Tensor, layers: list[tuple[Tensor, Tensor]], dropout: float, training: bool) -> Tensor:
    """MLP with LeakyReLU and dropout between layers, linear output."""
    for index, (weight, bias) in enumerate(layers):
        x = F.linear(F.dropout(x, dropout, training), weight, bias)
        if index < len(layers) - 1:
            x = F.leaky_relu(x, NEGATIVE_SLOPE)
    return x


def kcan_logits(
    user: Star,
    item: Star,
    weights: HeadWeights,
    gamma: float,
    conditional: bool,
    dropout: float = 0.0,
    training: bool = False,
) -> Tensor:
    """Steps 4-5 for aligned (user, item) stars: ⟨user tower([r_u‖x_u]), item tower([r_v‖x_v])⟩ + b; shape (B,)."""
    user_out, item_out = tower_outputs(user, item, weights, gamma, conditional, dropout, training)
    logits = (user_out * item_out).sum(dim=-1) + weights.bias
    if weights.centre_dot:
        logits = logits + (user.centre * item.centre).sum(dim=-1)
    return logits if item.bias is None else logits + item.bias


def tower_outputs(
    user: Star,
    item: Star,
    weights: HeadWeights,
    gamma: float,
    conditional: bool,
    dropout: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """The two towers' outputs for aligned stars, whose dot product is the logit's pair-dependent part."""
    refined = refined_pair(user, item, weights, gamma, conditional)
    user_out = tower(torch.cat((refined[0], user.centre), dim=-1), weights.user_tower, dropout, training)
    item_out = tower(torch.cat((refined[1], item.centre), dim=-1), weights.item_tower, dropout, training)
    return user_out, item_out


def refined_pair(
    user: Star, item: Star, weights: HeadWeights, gamma: float, conditional: bool
) -> tuple[Tensor, Tensor]:
    """Target-specific representations (r_u, r_v) of aligned stars: each star with the other end masked out, its
    neighbours weighted by the conditional attention (when on) mixed with α."""
    return (
        refined_side(user, item.node_id, user.centre, item.centre, weights, gamma, conditional),
        refined_side(item, user.node_id, user.centre, item.centre, weights, gamma, conditional),
    )


def refined_side(
    star: Star, target: Tensor, h_user: Tensor, h_item: Tensor, weights: HeadWeights, gamma: float, conditional: bool
) -> Tensor:
    """One star's target-specific representation: ``target`` (the pair's other end) masked out, β conditioned on the
    pair's centres ``h_user``, ``h_item`` (so one side's refinement never depends on the other side's neighbours)."""
    kept = star.kept(target)
    beta = (
        conditional_attention(
            star, h_user, h_item, weights.attention, kept, weights.attention_transform, weights.bilinear
        )
        if conditional
        else None
    )
    return refine(star, kept, beta, gamma, weights.refine)


def repeat_star(star: Star, times: int) -> Star:
    """Each row of the batch repeated ``times`` times in place (row b becomes rows b·times .. b·times+times-1)."""
    repeat = lambda t: None if t is None else t.repeat_interleave(times, dim=0)  # noqa: E731
    return Star(
        repeat(star.node_id),
        repeat(star.centre),
        repeat(star.nbr_id),
        repeat(star.nbr_repr),
        repeat(star.nbr_alpha),
        repeat(star.bias),
    )


def without_each_neighbour(star: Star) -> Star:
    """The star batch repeated k times, copy j of row b with neighbour j's node removed (every slot holding its id set
    to padding, so it leaves both α's renormalisation and β's softmax; a node linked by two relations is removed
    whole); rows ordered (b, j), shape (B·k, ...)."""
    k = star.nbr_id.shape[1]
    repeated = repeat_star(star, k)
    removed = star.nbr_id.reshape(-1, 1)  # row (b, j) removes node nbr_id[b, j]
    return dataclasses.replace(repeated, nbr_id=repeated.nbr_id.masked_fill(repeated.nbr_id == removed, -1))


def neighbour_contributions(
    user: Star, item: Star, weights: HeadWeights, gamma: float, conditional: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Leave-one-out contributions of each star's neighbours to the served logit: (logits (B,), user side (B, k_u),
    item side (B, k_v)), entry j = logit - logit with neighbour j's node removed from its star (0 where j is padding
    or the pair's other end, which the head never reads).

    Why leave-one-out rather than α or β: the refined representation passes through LeakyReLU, two towers and a dot
    product, and removing a neighbour renormalises the others' weights, so neither attention weight is the change of
    the score; the score change when the neighbour is absent is, by construction, what the served head does.
    It is cheap because a star's refinement depends on the other side only through the two centres: removing a user
    neighbour changes the user tower's output alone, so the change is ⟨u - u_without_j, v⟩ (the biases cancel), one
    batched refinement and tower pass of B·k_u rows per side."""
    user_out, item_out = tower_outputs(user, item, weights, gamma, conditional)
    logits = (user_out * item_out).sum(dim=-1) + weights.bias
    if weights.centre_dot:
        logits = logits + (user.centre * item.centre).sum(dim=-1)
    logits = logits if item.bias is None else logits + item.bias
    sides = []
    for star, other, own_out, other_out, layers, is_user in (
        (user, item, user_out, item_out, weights.user_tower, True),
        (item, user, item_out, user_out, weights.item_tower, False),
    ):
        batch, k = star.nbr_id.shape
        without = without_each_neighbour(star)
        other_centre = other.centre.repeat_interleave(k, dim=0)
        h_user, h_item = (without.centre, other_centre) if is_user else (other_centre, without.centre)
        target = other.node_id.repeat_interleave(k, dim=0)
        refined = refined_side(without, target, h_user, h_item, weights, gamma, conditional)
        out_without = tower(torch.cat((refined, without.centre), dim=-1), layers, 0.0, False)
        change = ((own_out.repeat_interleave(k, dim=0) - out_without) * other_out.repeat_interleave(k, dim=0)).sum(-1)
        sides.append(change.reshape(batch, k) * star.kept(other.node_id))
    return logits, sides[0], sides[1]
