"""The request logic the routes call: pick a binding, read the user's features, score, rank, fall back.

The hot path: the user row from Feast (one entity row), item rows gathered by index from the binding's cached numpy
table, ``ScorerModel.score_arrays``; no pandas. ``naive=True`` swaps in the plain path (every pair read from Feast into
a pandas frame, the pyfunc model's ``predict``) behind the same HTTP stack, as the benchmark baseline.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from serving.binding import Binding, BindingManager
from serving.contract import CHALLENGER, CHAMPION, SEEN_FEATURE
from serving.explain import Explanation, explain
from serving.fallback import ITEMS_WITHOUT_FEATURES, UNKNOWN_USER, most_popular, popularity_scores
from serving.features import FeatureReader
from serving.ranking import Ranked, ranked
from serving.schemas import ModelInfo, ModelsResponse, PredictRequest, RecommendRequest

Scored = tuple[np.ndarray, np.ndarray, str | None]  # scores, scored-by-model mask, fallback reason


class Service:
    """The binding manager and the feature reader, and what each route asks of them."""

    def __init__(self, manager: BindingManager, reader: FeatureReader, *, recommend_candidates: int, naive: bool):
        self.manager, self.reader = manager, reader
        self.recommend_candidates, self.naive = recommend_candidates, naive

    def _user(
        self, binding: Binding, user_id: int, with_seen: bool
    ) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
        """The user's row of the binding's user view (None: unknown user) and, when asked and published, the user's
        training items (empty when the user has none; None when the version published no seen-items view). One
        online read either way."""
        seen_view = binding.seen_view if with_seen else None
        if seen_view is None:
            return self.reader.user_row(binding.user_view, binding.model.user_features, user_id), None
        rows = self.reader.user_rows(
            {binding.user_view: binding.model.user_features, seen_view: [SEEN_FEATURE]}, user_id
        )
        seen_row = rows[seen_view]
        seen = seen_row[SEEN_FEATURE][0].astype(np.int64) if seen_row is not None else np.empty(0, dtype=np.int64)
        return rows[binding.user_view], seen[seen >= 0]

    def _scores(self, binding: Binding, user_row: dict[str, np.ndarray] | None, item_ids: np.ndarray) -> Scored:
        """(scores, scored-by-model mask, fallback reason) of the candidates."""
        if user_row is None:
            return popularity_scores(binding.stats, item_ids), np.zeros(len(item_ids), dtype=bool), UNKNOWN_USER
        index, found = binding.items.locate(item_ids)
        scores = np.empty(len(item_ids), dtype=np.float32)
        scores[found] = binding.score(user_row, index[found])
        if found.all():
            return scores, found, None
        scores[~found] = popularity_scores(binding.stats, item_ids[~found])
        return scores, found, ITEMS_WITHOUT_FEATURES

    @staticmethod
    def _explanations(
        binding: Binding,
        user_row: dict[str, np.ndarray] | None,
        seen: np.ndarray | None,
        item_ids: np.ndarray,
        by_model: np.ndarray,
    ) -> list[Explanation | None]:
        """One explanation per candidate: None for fallback-scored ones (popularity explains nothing about the
        user) and wherever the model has no faithful method."""
        found: list[Explanation | None] = [None] * len(item_ids)
        if user_row is None or not by_model.any():
            return found
        index, _ = binding.items.locate(item_ids[by_model])
        for position, explanation in zip(
            np.flatnonzero(by_model), explain(binding, user_row, index, seen), strict=True
        ):
            found[position] = explanation
        return found

    def _naive_scores(self, binding: Binding, user_id: int, item_ids: np.ndarray) -> Scored:
        """Same contract as :meth:`_scores`, the plain way: every pair read from Feast into pandas, then predict."""
        model = binding.model
        frame = self.reader.naive_frame(
            binding.user_view, model.user_features, binding.item_view, model.item_features, user_id, item_ids.tolist()
        )
        complete = frame.notna().all(axis=1).to_numpy()
        if not complete.any():
            return popularity_scores(binding.stats, item_ids), complete, UNKNOWN_USER
        scores = popularity_scores(binding.stats, item_ids)
        scores[complete] = np.asarray(model.predict(None, frame[complete]), dtype=np.float32)
        return scores, complete, None if complete.all() else ITEMS_WITHOUT_FEATURES

    def predict(self, body: PredictRequest, variant: str | None) -> Ranked:
        """The /v1/predict result: every candidate, model-scored where its features exist (explained if asked)."""
        binding = self.manager.pick(body.user_id, variant)
        item_ids = np.asarray(body.item_ids, dtype=np.int64)
        user_row, seen = None, None
        if self.naive:
            scores, by_model, fallback = self._naive_scores(binding, body.user_id, item_ids)
            if body.explain:
                user_row, seen = self._user(binding, body.user_id, with_seen=True)
        else:
            user_row, seen = self._user(binding, body.user_id, with_seen=body.explain)
            scores, by_model, fallback = self._scores(binding, user_row, item_ids)
        missing = item_ids[~by_model].tolist() if fallback == ITEMS_WITHOUT_FEATURES else []
        explanations = self._explanations(binding, user_row, seen, item_ids, by_model) if body.explain else None
        return ranked(binding, item_ids, scores, by_model, fallback, missing, explanations, user_row)

    def recommend(self, body: RecommendRequest, variant: str | None) -> Ranked:
        """The /v1/recommend result: retrieval by dot product over cached item vectors, then the scorer re-ranks;
        the user's training interactions are left out unless ``exclude_seen`` is false."""
        binding = self.manager.pick(body.user_id, variant)
        user_row, seen = self._user(binding, body.user_id, with_seen=body.exclude_seen or body.explain)
        if user_row is None:
            top = most_popular(binding.stats, binding.items.ids, body.k)
            by_model = np.zeros(len(top), dtype=bool)
            explanations = [None] * len(top) if body.explain else None
            return ranked(
                binding, top, popularity_scores(binding.stats, top), by_model, UNKNOWN_USER, None, explanations
            )
        excluded = seen if body.exclude_seen and seen is not None else np.empty(0, dtype=np.int64)
        wanted = max(self.recommend_candidates, body.k)
        candidates = binding.retrieve(user_row, wanted + len(excluded))
        if candidates is None:  # no shared vector: the most popular unseen items are the candidates
            unseen = binding.items.ids[~np.isin(binding.items.ids, excluded)]
            candidates, _ = binding.items.locate(most_popular(binding.stats, unseen, wanted))
        candidates = candidates[~np.isin(binding.items.ids[candidates], excluded)]
        scores = binding.score(user_row, candidates)
        best = np.argsort(-scores, kind="stable")[: body.k]
        top, by_model = binding.items.ids[candidates[best]], np.ones(len(best), dtype=bool)
        explanations = self._explanations(binding, user_row, seen, top, by_model) if body.explain else None
        return ranked(binding, top, scores[best], by_model, None, None, explanations, user_row)

    def model(self) -> ModelsResponse:
        """The /v1/model body: champion, challenger (if any), the challenger's share and the last refresh error."""
        champion = self.manager.pick(0, CHAMPION)
        challenger = self.manager.bindings.get(CHALLENGER)
        return ModelsResponse(
            **_model_info(champion).model_dump(),
            challenger=_model_info(challenger) if challenger is not None else None,
            challenger_share=self.manager.challenger_share,
            last_refresh_error=self.manager.last_error,
        )

    def watermark_ages(self) -> dict[str, float]:
        """Seconds since the latest materialization of every online view in the cached Feast registry (empty while
        the registry cannot be read: /metrics must answer during an outage)."""
        try:
            views = self.reader.store.list_feature_views(allow_cache=True)
        except Exception:  # noqa: BLE001  any registry or store failure: no samples this scrape
            return {}
        now = datetime.now(UTC)
        return {
            view.name: (now - max(end for _, end in view.materialization_intervals)).total_seconds()
            for view in views
            if view.online and view.materialization_intervals
        }

    def reload(self) -> ModelsResponse:
        """Re-read the aliases and reload every binding now (not waiting for the poller); the new /v1/model body."""
        self.manager.refresh(force=True)
        return self.model()


def _model_info(binding: Binding) -> ModelInfo:
    return ModelInfo(
        name=binding.name,
        version=binding.version,
        alias=binding.alias,
        feature_service=binding.feature_service,
        user_view=binding.user_view,
        item_view=binding.item_view,
        loaded_at=binding.loaded_at,
        watermark=binding.item_watermark,
        items_cached=len(binding.items),
        fallback_stats_watermark=binding.stats_watermark,
    )
