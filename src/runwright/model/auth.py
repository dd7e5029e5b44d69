"""Who may do what: roles, ranked, and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"  # reads everything but secrets
    OPERATOR = "operator"  # creates, edits, deploys, runs and cancels jobs; triggers
    ADMIN = "admin"  # everything: users, tokens, credentials, settings, audit


RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """The user or API token a request acts as."""

    name: str  # the user's name, or "token:<token name>"
    role: Role
    via: str  # "token" (Authorization: Bearer) or "session" (the browser's cookie)
    user_id: int | None = None
    token_id: int | None = None

    def can(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]
