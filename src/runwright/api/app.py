"""The application factory."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from runwright import __version__, web
from runwright.api.auth import SignInRequired, authorize
from runwright.api.errors import install_error_handlers
from runwright.api.routes import (
    code,
    hooks,
    jobs,
    logs,
    runs,
    scripts,
    session,
    steps,
    system,
    targets,
    triggers,
    users,
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

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> Response:
        return session.sign_in_redirect(exc.next_url)

    # Webhooks check their own token or signature: no session or API token there.
    app.include_router(hooks.router)
    app.include_router(session.router)
    guarded = [Depends(authorize)]  # the role of api.access, on every other route
    for router in (
        runs.router,
        logs.router,
        jobs.router,
        scripts.router,
        steps.router,
        triggers.router,
        targets.router,
        users.router,
        system.router,
    ):
        app.include_router(router, dependencies=guarded)
    app.include_router(code.router, dependencies=guarded)
    web.install(app)
    return app
