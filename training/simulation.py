"""Simulated traffic for the online loop: requests to a running service, and clicks drawn from a known ground truth.

The truth is the dataset's held-out positives (:class:`ClickTruth`): the validation and test positives of the split
training uses (``seed``, ``protocol``), which no model trained on that split has seen. A shown item that is one of
the user's held-out positives is clicked with probability ``hit``, any other with ``miss``. On the synthetic set the
positives are the generator's own clicks (its preference model), on Last.FM the users' real listening.

:func:`simulate_traffic` sends ``n`` requests (users drawn uniformly, so every activity tercile gets a third),
shows the top ``shown`` items of each answer, posts their impressions and the clicks the truth draws to
``POST /v1/feedback``, and counts what happened per arm. Every draw is seeded by (seed, request index).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import httpx
import numpy as np
import pandas as pd

from serving.client import ServingClient, ServingError
from serving.schemas import ScoresResponse
from training.data.dataset import Dataset
from training.data.splits import Protocol, make_split

Route = Literal["predict", "recommend"]


@dataclass(frozen=True)
class ClickTruth:
    """Click probabilities from held-out positives (``keys`` = user * n_items + item, sorted)."""

    n_users: int
    n_items: int
    keys: np.ndarray
    hit: float = 0.5
    miss: float = 0.02

    @classmethod
    def held_out(
        cls, dataset: Dataset, seed: int, protocol: Protocol = "ctr", hit: float = 0.5, miss: float = 0.02
    ) -> ClickTruth:
        """The validation and test positives of ``dataset``'s split (``seed``, ``protocol``) as the truth."""
        if not (0 <= miss <= hit <= 1):
            raise ValueError(f"click probabilities need 0 <= miss <= hit <= 1, got miss={miss}, hit={hit}")
        split = make_split(dataset.interactions, seed, protocol)
        held = pd.concat([split.valid, split.test])
        held = held[held["label"] == 1]
        keys = np.unique(held["user"].to_numpy(np.int64) * dataset.n_items + held["item"].to_numpy(np.int64))
        return cls(dataset.n_users, dataset.n_items, keys, hit, miss)

    def is_positive(self, user: int, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a held-out positive."""
        keys = user * self.n_items + np.asarray(items, dtype=np.int64)
        index = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        return (self.keys[index] == keys) if len(self.keys) else np.zeros(len(keys), dtype=bool)

    def probability(self, user: int, items: np.ndarray) -> np.ndarray:
        """The chance each shown item is clicked."""
        return np.where(self.is_positive(user, items), self.hit, self.miss)

    def positives_of(self, user: int) -> np.ndarray:
        """The user's held-out positive items."""
        low, high = np.searchsorted(self.keys, [user * self.n_items, (user + 1) * self.n_items])
        return self.keys[low:high] - user * self.n_items

    def candidates(self, user: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct candidate items: up to half the user's held-out positives, the rest drawn at random (the
        CTR protocol's mix, so a ranking has something to find)."""
        n = min(n, self.n_items)
        positives = self.positives_of(user)
        chosen = rng.permutation(positives)[: n // 2]
        others = np.setdiff1d(np.arange(self.n_items), chosen)
        return rng.permutation(np.concatenate([chosen, rng.choice(others, n - len(chosen), replace=False)]))


@dataclass
class ArmTraffic:
    """What one arm served and was clicked in the simulation."""

    requests: int = 0
    impressions: int = 0
    clicks: int = 0


@dataclass
class TrafficReport:
    """Totals of one simulation: failed counts requests or feedback calls the service refused or did not answer."""

    requests: int = 0
    failed: int = 0
    feedback_events: int = 0
    arms: dict[str, ArmTraffic] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the first few failures, for the operator


MAX_ERRORS = 5


def _ask(
    client: ServingClient, route: Route, user: int, truth: ClickTruth, n: int, shown: int, rng: np.random.Generator
) -> ScoresResponse:
    if route == "predict":
        return client.predict(user, truth.candidates(user, n, rng).tolist())
    return client.recommend(user, k=shown)


def simulate_traffic(
    url: str,
    truth: ClickTruth,
    n_requests: int,
    *,
    route: Route = "predict",
    candidates: int = 20,
    shown: int = 5,
    concurrency: int = 4,
    seed: int = 0,
    on_request: Callable[[], None] | None = None,
) -> TrafficReport:
    """Send ``n_requests`` to the service at ``url`` (``concurrency`` at a time) and post each answer's feedback:
    impressions for its top ``shown`` items, clicks drawn from ``truth``. ``on_request`` is called after each."""
    if n_requests < 1 or shown < 1 or candidates < shown or concurrency < 1:
        raise ValueError("need requests >= 1, shown >= 1, candidates >= shown and concurrency >= 1")
    report, lock = TrafficReport(), threading.Lock()

    def one(index: int, client: ServingClient) -> None:
        rng = np.random.default_rng([seed, index])
        user = int(rng.integers(truth.n_users))
        try:
            answer = _ask(client, route, user, truth, candidates, shown, rng)
            top = np.asarray([s.item_id for s in answer.scores[:shown]], dtype=np.int64)
            clicked = top[rng.random(len(top)) < truth.probability(user, top)]
            events = [(int(i), "impression") for i in top] + [(int(i), "click") for i in clicked]
            client.feedback(answer.request_id, events)
        except (ServingError, httpx.HTTPError) as error:
            with lock:
                report.failed += 1
                if len(report.errors) < MAX_ERRORS:
                    report.errors.append(f"request {index} (user {user}): {error}")
        else:
            with lock:
                arm = report.arms.setdefault(f"{answer.arm} v{answer.model.version}", ArmTraffic())
                arm.requests += 1
                arm.impressions += len(top)
                arm.clicks += len(clicked)
                report.feedback_events += len(events)
        finally:
            with lock:
                report.requests += 1
            if on_request is not None:
                on_request()

    with ServingClient(url) as client, ThreadPoolExecutor(concurrency, "graphrec-traffic") as pool:
        for future in [pool.submit(one, index, client) for index in range(n_requests)]:
            future.result()
    return report
