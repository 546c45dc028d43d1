"""Pages for people: ``/dashboard`` and ``/docs`` (Swagger UI served from this package)."""

from __future__ import annotations

import pathlib

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
_DASHBOARD = STATIC / "dashboard.html"

router = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """A static page that reads the API with a key typed into it."""
    return HTMLResponse(_DASHBOARD.read_text(encoding="utf-8"))


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored files under ``/static/swagger``: no CDN, works offline."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API",
        swagger_js_url=f"{root}/static/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/static/swagger/swagger-ui.css",
        swagger_favicon_url=f"{root}/static/swagger/favicon-32x32.png",
    )
