"""Driver errors translated at the boundary: nothing above db/ sees SQLAlchemy exceptions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import sqlalchemy as sa

from runwright.errors import DatabaseConflict, DatabaseError, DatabaseUnavailable


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
            raise DatabaseUnavailable(
                f"The database is unavailable while trying to {action}: "
                f"{_first_line(exc.orig)}. It will be retried; check that the database "
                "server is running and RUNWRIGHT_DATABASE_URL is right."
            ) from exc
        if isinstance(exc, sa.exc.IntegrityError):
            raise DatabaseConflict(
                f"Could not {action}: it conflicts with what is stored ({_first_line(exc.orig)})."
            ) from exc
        raise DatabaseError(
            f"Database error while trying to {action}: {_first_line(exc.orig)}"
        ) from exc
    except sa.exc.TimeoutError as exc:
        raise DatabaseUnavailable(
            f"No database connection became free while trying to {action}; "
            "the database may be overloaded."
        ) from exc
    except psycopg.OperationalError as exc:  # raw driver use (COPY) bypasses SQLAlchemy
        raise DatabaseUnavailable(
            f"The database is unavailable while trying to {action}: {_first_line(exc)}."
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"Database error while trying to {action}: {_first_line(exc)}") from exc


def _first_line(error: BaseException | None) -> str:
    text = str(error or "").strip()
    return text.splitlines()[0] if text else type(error).__name__
