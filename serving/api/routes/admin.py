"""``POST /admin/reload``. Every route of this router requires the admin Bearer token (``deps.require_admin``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.api.deps import ADMIN_ERRORS, ServiceDep, require_admin
from serving.errors import UNAVAILABLE
from serving.schemas import ModelsResponse

router = APIRouter(dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)


@router.post("/admin/reload", response_model=ModelsResponse, responses=UNAVAILABLE)
def reload(service: ServiceDep) -> ModelsResponse:
    """Re-read aliases and reload every binding now (Bearer token required)."""
    return service.reload()
