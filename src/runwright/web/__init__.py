"""The web UI: server-rendered pages with live parts, on top of the services and the
JSON API. ``install(app)`` mounts the static files and the pages; call it last, after
the API routers, so that API paths win."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from runwright.web.pages import admin, dashboard, inventory, jobs, runs, scripts
from runwright.web.pages.common import PageError
from runwright.web.templating import STATIC, render


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in (dashboard, runs, jobs, scripts, inventory, admin):
        app.include_router(module.router)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        return render(
            request,
            exc.principal,
            "error.html",
            {
                "title": exc.title,
                "message": exc.message,
                "back_url": exc.back_url,
                "back_label": exc.back_label,
            },
            status_code=exc.status_code,
        )
