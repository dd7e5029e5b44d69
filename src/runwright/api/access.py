"""The role matrix: which role each route needs, by method and path template.

Reading needs ``viewer``; changing anything needs ``operator``; people, tokens, the
audit log and credentials' secrets need ``admin``. A few routes are public: health,
metrics, the sign-in pages and webhooks (which check their own token or signature).
"""

from __future__ import annotations

from runwright.model.auth import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/login", "/login/link", "/logout"})
PUBLIC_PREFIXES = ("/hooks/", "/static/", "/docs", "/redoc", "/openapi.json")
ADMIN_PREFIXES = ("/api/users", "/api/tokens", "/api/audit")
# Reading credentials (names, users, tags; never secrets) is for operators, who pick
# them for jobs; adding, changing and removing them is for admins.
CREDENTIALS = "/api/credentials"


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs; None for a public route."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith(ADMIN_PREFIXES):
        return Role.ADMIN
    if path.startswith(CREDENTIALS):
        return Role.OPERATOR if method in SAFE_METHODS else Role.ADMIN
    if path == "/api/me":
        return Role.VIEWER
    return Role.VIEWER if method in SAFE_METHODS else Role.OPERATOR
