"""``GET /v1/model``: which versions are served, with their feature views and watermarks."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import ServiceDep
from serving.errors import UNAVAILABLE
from serving.schemas import ModelsResponse

router = APIRouter()


@router.get("/v1/model", response_model=ModelsResponse, responses=UNAVAILABLE)
def model(service: ServiceDep) -> ModelsResponse:
    """The served versions, their feature views, load time and item-feature watermark."""
    return service.model()
