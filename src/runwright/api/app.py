"""The application factory."""

from __future__ import annotations

from fastapi import FastAPI

from runwright import __version__
from runwright.api.errors import install_error_handlers
from runwright.api.routes import (
    hooks,
    jobs,
    logs,
    runs,
    scripts,
    steps,
    system,
    targets,
    triggers,
)
from runwright.services.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="runwright",
        version=__version__,
        description="Self-hosted job orchestration: runs, queues and workers.",
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(hooks.router)
    app.include_router(runs.router)
    app.include_router(logs.router)
    app.include_router(jobs.router)
    app.include_router(scripts.router)
    app.include_router(steps.router)
    app.include_router(triggers.router)
    app.include_router(targets.router)
    app.include_router(system.router)
    return app
