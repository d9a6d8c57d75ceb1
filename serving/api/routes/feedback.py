"""``POST /v1/feedback``: impressions and clicks on the items of one scoring response, for the request log.

202 with the count queued. 404 names an unknown request id, 422 an item the response did not contain (or a malformed
body), 409 an event already recorded for that item, 503 (with ``Retry-After``) when the log's queue is full or
request logging is off; nothing is recorded unless every event of the call is valid.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from serving.api.deps import RequestLogDep, SettingsDep
from serving.requestlog import FeedbackRejected
from serving.schemas import ErrorBody, FeedbackAccepted, FeedbackRequest

ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (404, 409, 503)}

router = APIRouter()


@router.post("/v1/feedback", status_code=202, response_model=FeedbackAccepted, responses=ERRORS)
def feedback(body: FeedbackRequest, request_log: RequestLogDep, settings: SettingsDep) -> FeedbackAccepted:
    """Record impression and click events on items of the response named by ``request_id``."""
    retry = {"Retry-After": str(settings.serving_retry_after_s)}
    if request_log is None:
        raise HTTPException(503, "feedback is not recorded: request logging is off (GRAPHREC_SERVING_REQUEST_LOG)")
    try:
        accepted = request_log.feedback(body.request_id, [(e.item_id, e.event) for e in body.events])
    except FeedbackRejected as error:
        raise HTTPException(error.status, str(error), headers=retry if error.status == 503 else None) from error
    return FeedbackAccepted(request_id=body.request_id, accepted=accepted)
