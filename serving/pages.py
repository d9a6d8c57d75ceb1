"""The content of the web pages (serving/api/routes/web.py renders it with serving/templates/): plain dicts built from
the same service calls the API makes, so a page shows exactly what /v1/recommend answers.

Every failure a person can meet is a page, never a trace: a user id that is not a non-negative integer (400), no
model bound yet, the feature store or the registry unreachable (503).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.binding import Binding, NotReady, RegistryUnavailable
from serving.contract import ACTIVITY_TERCILE, CHALLENGER, CHAMPION
from serving.explain import Explanation, item_name
from serving.features import StoreUnavailable
from serving.ranking import Ranked
from serving.registry_view import registry_page
from serving.schemas import MAX_K, RecommendRequest
from serving.service import Service

TERCILE_NAMES = ("sparse", "medium", "active")
METHOD_NOTES = {
    "leave_one_out": "Each reason is a neighbour in the user's or the item's distilled star (KCAN); its number is how "
    "much the score drops when that neighbour is removed and the served model is run again.",
    "nearest_seen_items": "Each reason is an item the user interacted with in training whose embedding is most "
    "similar to the recommended one (cosine similarity); it is a similarity, not a share of the score.",
}
NO_REASON = "no explanation: this model has no faithful way to explain its score"


@dataclass(frozen=True)
class Page:
    """A template's context and the HTTP status to answer with."""

    context: dict[str, object]
    status: int = 200


def parse_user_id(raw: str | None) -> int | None:
    """The user id typed into the form, or :class:`ValueError` saying what is wrong with it (None: none typed)."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit() or int(text) >= 2**63:
        raise ValueError(f"“{text[:40]}” is not a user id: enter a whole number from 0 upwards.")
    return int(text)


def reason_lines(explanation: Explanation) -> list[str]:
    """One readable line per reason: side, number, name, kind and relation."""
    lines = []
    for side in ("user", "item"):
        for reason in explanation[f"{side}_side"]:  # type: ignore[attr-defined]
            contribution = reason["contribution"]
            number = contribution if contribution is not None else reason["similarity"]
            label = "similarity" if contribution is None else "contribution"
            via = f"{reason['kind'] or 'node'}" + (f", {reason['relation']}" if reason["relation"] else "")
            lines.append(f"{side} side · {reason['name']} ({via}) · {label} {number:+.3f}")
    return lines


def _tercile(service: Service, binding: Binding, user_id: int) -> str:
    if binding.seen_view is None:
        return "not published with this version"
    row = service.reader.user_row(binding.seen_view, [ACTIVITY_TERCILE], user_id)
    if row is None:
        return "unknown (no training interactions)"
    return TERCILE_NAMES[int(row[ACTIVITY_TERCILE][0])]


def _result(service: Service, ranked: Ranked, user_id: int) -> dict[str, object]:
    binding = ranked.binding
    explanations = ranked.explanations or [None] * len(ranked.item_ids)
    items = []
    for rank, (item_id, score, by_model, explanation) in enumerate(
        zip(ranked.item_ids.tolist(), ranked.scores.tolist(), ranked.by_model.tolist(), explanations, strict=True),
        start=1,
    ):
        items.append(
            {
                "rank": rank,
                "item_id": item_id,
                "name": item_name(binding.catalogue, item_id),
                "score": score,
                "source": "model" if by_model else "popularity",
                "reasons": reason_lines(explanation) if explanation is not None else [],
                "no_reason": None if explanation is not None or not by_model else NO_REASON,
            }
        )
    method = next((e["method"] for e in explanations if e is not None), None)
    fallback = None
    if ranked.fallback == "unknown_user":
        fallback = (
            f"User {user_id} is unknown to {binding.name} v{binding.version}: these are the most popular items "
            "(popularity fallback), so there is nothing personal to explain."
        )
    return {
        "model": binding.name,
        "version": binding.version,
        "alias": binding.alias,
        "tercile": _tercile(service, binding, user_id),
        "fallback": fallback,
        "excluded_seen": binding.seen_view is not None,
        "rows": items,
        "method_note": METHOD_NOTES.get(str(method), ""),
    }


def user_page(service: Service, raw_user_id: str | None, k: int, variant: str | None) -> Page:
    """The user page: the form, and for a user id the top-k with names, scores, explanations and fallback badges."""
    k = int(np.clip(k, 1, MAX_K))
    variant = variant if variant in (CHAMPION, CHALLENGER) else None
    context: dict[str, object] = {
        "page": "user",
        "raw_user_id": raw_user_id,
        "user_id": None,
        "k": k,
        "max_k": MAX_K,
        "variant": variant,
        "result": None,
        "error": None,
    }
    try:
        user_id = parse_user_id(raw_user_id)
    except ValueError as error:
        return Page(context | {"error": str(error)}, 400)
    if user_id is None:
        return Page(context)
    context["user_id"] = user_id
    try:
        ranked = service.recommend(RecommendRequest(user_id=user_id, k=k, explain=True), variant)
        return Page(context | {"result": _result(service, ranked, user_id)})
    except NotReady as error:
        message = f"No model is being served yet ({error}). Register a version and give it the champion alias."
    except StoreUnavailable as error:
        message = f"The feature store is unavailable ({error}). Try again in a moment."
    except RegistryUnavailable as error:
        message = f"The model registry is unavailable ({error}). Try again in a moment."
    return Page(context | {"error": message}, 503)


def model_page(service: Service) -> Page:
    """The model page: every registered version, its aliases, metrics by tercile and features, and the audit trail."""
    manager = service.manager
    bound = {alias: b.version for alias, b in manager.bindings.items() if b is not None}
    context: dict[str, object] = {"page": "model", "name": manager.name, "bound": bound, "error": None}
    try:
        return Page(context | {"registry": registry_page(manager.source, manager.name)})
    except RegistryUnavailable as error:
        return Page(context | {"error": f"The model registry is unavailable ({error}). Try again in a moment."}, 503)
