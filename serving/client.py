"""A small httpx client of the serving API (used by ``graphrec predict`` and the benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from serving.schemas import FeedbackAccepted, ModelsResponse, ScoresResponse

DEFAULT_URL = "http://127.0.0.1:8000"


class ServingError(RuntimeError):
    """The service answered with an error status."""

    def __init__(self, status: int, detail: object):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class ServingClient:
    """Calls one serving instance over HTTP (keep-alive connection reused across calls)."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 10.0, variant: str | None = None):
        headers = {"X-Graphrec-Variant": variant} if variant else {}
        self.http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _json(self, response: httpx.Response) -> object:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ServingError(response.status_code, detail)
        return response.json()

    def predict(self, user_id: int, item_ids: Sequence[int], explain: bool = False) -> ScoresResponse:
        """Scores and ranks of ``item_ids`` for ``user_id`` (with each item's explanation when ``explain``)."""
        body = {"user_id": user_id, "item_ids": list(item_ids)} | ({"explain": True} if explain else {})
        return ScoresResponse.model_validate(self._json(self.http.post("/v1/predict", json=body)))

    def recommend(self, user_id: int, k: int = 10, explain: bool = False, exclude_seen: bool = True) -> ScoresResponse:
        """Top-``k`` items for ``user_id`` (training interactions left out unless ``exclude_seen`` is false)."""
        body = {"user_id": user_id, "k": k, "exclude_seen": exclude_seen, "explain": explain}
        return ScoresResponse.model_validate(self._json(self.http.post("/v1/recommend", json=body)))

    def feedback(self, request_id: str, events: Sequence[tuple[int, str]]) -> FeedbackAccepted:
        """Record ``(item_id, "impression" | "click")`` events on the answer named by ``request_id``."""
        body = {"request_id": request_id, "events": [{"item_id": i, "event": e} for i, e in events]}
        return FeedbackAccepted.model_validate(self._json(self.http.post("/v1/feedback", json=body)))

    def model(self) -> ModelsResponse:
        """What the service serves."""
        return ModelsResponse.model_validate(self._json(self.http.get("/v1/model")))
