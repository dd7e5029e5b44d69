"""Users, API tokens, browser sessions and the audit log: who may use runwright.

Passwords are hashed with argon2id; tokens, sessions and one-time sign-in links are
256-bit random secrets of which only the SHA-256 is stored. A token's checks are
cached for a moment, so a busy API client costs one lookup every few seconds; a
revoked token stops working within that moment (``CACHE_SECONDS``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from runwright.db.auth import ApiToken, AuditEvent, AuthRepository, Session, User
from runwright.errors import (
    Conflict,
    DatabaseConflict,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from runwright.model.auth import Principal, Role

CACHE_SECONDS = 2.0
TOUCH_EVERY = 10.0  # seconds between two writes of tokens' last use
SESSION_SECONDS = 7 * 24 * 3600
LINK_SECONDS = 15 * 60
MIN_PASSWORD = 10
# Failed sign-ins allowed per address and per user name within FAILURE_WINDOW seconds;
# argon2 already makes each guess slow, this stops a patient guesser.
MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
TOKEN_PREFIX = "rw_"  # noqa: S105 - a marker, not a secret
LOCAL_TOKEN = "local-admin"  # noqa: S105 - the name of the token the server writes for the CLI
LOCAL_USER = "admin"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"{what} name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_', "
            "'@' or '-', starting with a letter or digit."
        )
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidRequest(
            f"Role {role!r} does not exist; use one of {', '.join(r.value for r in Role)}."
        ) from None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new browser session: the cookie's secret and the CSRF token of its forms."""

    secret: str
    csrf: str
    user: User


class AuthService:
    def __init__(self, *, repository: AuthRepository) -> None:
        self._repo = repository
        self._hasher = PasswordHasher()
        self._dummy: str | None = None  # hashed on the first unknown user's sign-in
        self._lock = threading.Lock()
        self._token_cache: dict[str, tuple[float, ApiToken | None]] = {}
        self._session_cache: dict[str, tuple[float, Session | None]] = {}
        self._used: dict[int, float] = {}
        self._touched = time.monotonic()
        self._failures: dict[str, deque[float]] = {}

    # -- users ---------------------------------------------------------------------
    def create_user(
        self, name: str, role: str, password: str | None, *, actor: str, address: str | None = None
    ) -> tuple[User, str | None]:
        """The user, and the password generated for it when none was given (shown once)."""
        check_name(name, "User")
        checked = check_role(role)
        generated = None
        if password is None:
            generated = password = secrets.token_urlsafe(15)
        self._check_password(password)
        try:
            user = self._repo.create_user(name, checked, self._hasher.hash(password), time.time())
        except DatabaseConflict:
            raise Conflict(f"User {name!r} exists; pick another name.") from None
        self.audit(actor, "user.created", name, {"role": checked.value}, address)
        return user, generated

    def users(self) -> list[User]:
        return self._repo.users()

    def user(self, name: str) -> User:
        user = self._repo.user(name)
        if user is None:
            raise NotFound(f"User {name!r} does not exist; `runwright user list` shows them.")
        return user

    def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
        actor: str,
        address: str | None = None,
    ) -> User:
        user = self.user(name)
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = check_role(role).value
        if password is not None:
            self._check_password(password)
            values["password_hash"] = self._hasher.hash(password)
        if disabled is not None:
            values["disabled"] = disabled
        losing_admin = (
            user.role == Role.ADMIN
            and not user.disabled
            and (values.get("role", Role.ADMIN.value) != Role.ADMIN.value or disabled)
        )
        if losing_admin and self._repo.count_admins() <= 1:
            raise Conflict(f"{name} is the last enabled admin; make another user admin first.")
        updated = self._repo.update_user(name, values) if values else user
        assert updated is not None
        changed = sorted(k if k != "password_hash" else "password" for k in values)
        self.audit(actor, "user.updated", name, {"changed": changed, "role": updated.role}, address)
        self._forget()
        return updated

    def delete_user(self, name: str, *, actor: str, address: str | None = None) -> None:
        user = self.user(name)
        if user.role == Role.ADMIN and not user.disabled and self._repo.count_admins() <= 1:
            raise Conflict(f"{name} is the last enabled admin; make another user admin first.")
        self._repo.delete_user(user.id)
        self.audit(actor, "user.deleted", name, {}, address)
        self._forget()

    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise InvalidRequest(
                f"The password is too short: use at least {MIN_PASSWORD} characters "
                "(or leave it out to have one generated)."
            )

    # -- sign-in and sessions -------------------------------------------------------------
    def sign_in(self, name: str, password: str, address: str | None = None) -> SignedIn | None:
        """A session for these credentials, or None (the same answer, and about the same
        time, for an unknown user and a wrong password)."""
        keys = (f"user:{name}", f"address:{address}")
        self._check_failures(keys)
        user = self._repo.user(name)
        hashed = user.password_hash if user is not None and user.password_hash else None
        if hashed is None:
            # An unknown user costs a verification too: the answer's time tells nothing.
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            hashed = self._dummy
        try:
            self._hasher.verify(hashed, password)
            good = user is not None and user.password_hash is not None and not user.disabled
        except (VerificationError, InvalidHashError):
            good = False
        if not good or user is None:
            self._note_failure(keys)
            self.audit(name, "sign_in.failed", name, {}, address)
            return None
        self.audit(name, "sign_in", name, {"with": "password"}, address)
        return self._start_session(user)

    def _check_failures(self, keys: tuple[str, ...]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = self._failures.get(key)
                while recent and now - recent[0] > FAILURE_WINDOW:
                    recent.popleft()
                if recent and len(recent) >= MAX_FAILURES:
                    wait = FAILURE_WINDOW - (now - recent[0])
                    raise RateLimited(
                        f"Too many failed sign-ins; try again in {wait:.0f} seconds, or ask "
                        "an admin for a sign-in link (`runwright user link NAME`).",
                        retry_after=wait,
                    )

    def _note_failure(self, keys: tuple[str, ...]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)

    def sign_in_link(self, name: str, *, actor: str) -> str:
        """A one-time secret that signs ``name`` in (within LINK_SECONDS)."""
        user = self.user(name)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        self._repo.create_session(digest(secret), user.id, "link", "", now, now + LINK_SECONDS)
        self.audit(actor, "sign_in_link.created", name, {}, None)
        return secret

    def use_link(self, secret: str, address: str | None = None) -> SignedIn | None:
        user_id = self._repo.take_link(digest(secret), time.time())
        user = next((u for u in self._repo.users() if u.id == user_id), None)
        if user is None or user.disabled:
            self.audit("anonymous", "sign_in.failed", "", {"with": "link"}, address)
            return None
        self.audit(user.name, "sign_in", user.name, {"with": "link"}, address)
        return self._start_session(user)

    def _start_session(self, user: User) -> SignedIn:
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        self._repo.create_session(
            digest(secret), user.id, "session", csrf, now, now + SESSION_SECONDS
        )
        self._repo.update_user(user.name, {"last_sign_in_at": now})
        return SignedIn(secret=secret, csrf=csrf, user=user)

    def session(self, secret: str) -> Session | None:
        key = digest(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._session_cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = self._repo.session(key, "session", time.time())
        if found is not None and found.user.disabled:
            found = None
        with self._lock:
            if len(self._session_cache) > 10_000:
                self._session_cache.clear()
            self._session_cache[key] = (now, found)
        return found

    def sign_out(self, secret: str, address: str | None = None) -> None:
        found = self.session(secret)
        self._repo.end_session(digest(secret))
        self._forget()
        if found is not None:
            self.audit(found.user.name, "sign_out", found.user.name, {}, address)

    # -- API tokens -----------------------------------------------------------------
    def create_token(
        self, name: str, role: str, *, actor: str, address: str | None = None
    ) -> tuple[ApiToken, str]:
        """The token's record and its secret (shown once, never stored)."""
        check_name(name, "Token")
        checked = check_role(role)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            token = self._repo.create_token(
                name, checked, digest(secret), secret[:10], actor, time.time()
            )
        except DatabaseConflict:
            raise Conflict(
                f"A token named {name!r} exists; pick another name or revoke that one."
            ) from None
        self.audit(actor, "token.created", name, {"role": checked.value}, address)
        return token, secret

    def tokens(self) -> list[ApiToken]:
        return self._repo.tokens()

    def revoke_token(self, name: str, *, actor: str, address: str | None = None) -> ApiToken:
        token = self._repo.revoke_token(name, time.time())
        if token is None:
            existing = self._repo.token(name)
            if existing is None:
                raise NotFound(f"Token {name!r} does not exist; `runwright token list` shows them.")
            return existing  # revoked already: nothing changes
        self.audit(actor, "token.revoked", name, {}, address)
        self._forget()
        return token

    def authenticate_token(self, secret: str) -> Principal | None:
        key = digest(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._token_cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            token = cached[1]
        else:
            token = self._repo.token_by_hash(key)
            with self._lock:
                if len(self._token_cache) > 10_000:
                    self._token_cache.clear()
                self._token_cache[key] = (now, token)
        if token is None or token.revoked_at is not None:
            return None
        self._note_use(token.id)
        return Principal(
            name=f"token:{token.name}", role=token.role, via="token", token_id=token.id
        )

    def _note_use(self, token_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._used[token_id] = time.time()
            if now - self._touched < TOUCH_EVERY:
                return
            used, self._used, self._touched = self._used, {}, now
        self._repo.touch_tokens(used)

    def flush(self) -> None:
        """Write the tokens' last use now (at shutdown)."""
        with self._lock:
            used, self._used = self._used, {}
        if used:
            self._repo.touch_tokens(used)

    def _forget(self) -> None:
        with self._lock:
            self._token_cache.clear()
            self._session_cache.clear()

    # -- the first start -------------------------------------------------------------
    def bootstrap(self, home: Path) -> str | None:
        """On a database without users: the local admin (signing in by one-time links
        only: there is no default password). When ``home/token`` is missing or no longer
        valid: a new admin token written there (mode 0600) for the CLI on this machine.
        Returns a one-time sign-in secret for the local admin, when it exists."""
        if not self._repo.users():
            try:
                self._repo.create_user(LOCAL_USER, Role.ADMIN, None, time.time())
                self.audit("runwright", "user.created", LOCAL_USER, {"role": "admin"}, None)
            except DatabaseConflict:
                pass  # another server made it at the same moment
        path = home / "token"
        current = path.read_text().strip() if path.exists() else ""
        if not current or self.authenticate_token(current) is None:
            name = LOCAL_TOKEN
            taken = {t.name for t in self._repo.tokens()}
            suffix = 2
            while name in taken:
                name, suffix = f"{LOCAL_TOKEN}-{suffix}", suffix + 1
            _, secret = self.create_token(name, Role.ADMIN.value, actor="runwright")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secret + "\n")
            path.chmod(0o600)
        local = self._repo.user(LOCAL_USER)
        if local is None or local.disabled or local.role != Role.ADMIN:
            return None
        return self.sign_in_link(LOCAL_USER, actor="runwright")

    # -- audit -----------------------------------------------------------------------
    def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
        address: str | None,
    ) -> None:
        self._repo.audit(
            {
                "at": time.time(),
                "actor": actor[:200],
                "action": action,
                "subject": subject[:300],
                "detail": detail,
                "address": address,
            }
        )

    def audit_events(self, *, limit: int, before_id: int | None = None) -> list[AuditEvent]:
        return self._repo.audit_events(limit=limit, before_id=before_id)
