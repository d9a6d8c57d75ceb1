"""The web pages (``GET /ui/user``, ``GET /ui/model``): server-rendered HTML from serving/templates/ (Jinja2, no
JavaScript), built by serving/pages.py from the same service calls as the API. ``GET /ui`` redirects to the user page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from serving.api.deps import ServiceDep
from serving.pages import model_page, user_page

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "templates")
router = APIRouter(include_in_schema=False)


@router.get("/ui")
def home() -> RedirectResponse:
    """The user page is the start page."""
    return RedirectResponse("/ui/user", status_code=307)


@router.get("/ui/user", response_class=HTMLResponse)
def user(
    request: Request, service: ServiceDep, user_id: str | None = None, k: int = 10, variant: str | None = None
) -> HTMLResponse:
    """A user's top-k with names, scores, explanations and fallback badges."""
    page = user_page(service, user_id, k, variant)
    return TEMPLATES.TemplateResponse(request, "user.html", page.context, status_code=page.status)


@router.get("/ui/model", response_class=HTMLResponse)
def model(request: Request, service: ServiceDep) -> HTMLResponse:
    """Registered versions, aliases, metrics by tercile, features read, and the audit trail."""
    page = model_page(service)
    return TEMPLATES.TemplateResponse(request, "model.html", page.context, status_code=page.status)
