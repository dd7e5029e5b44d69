"""Settings from RUNWRIGHT_* variables, their defaults, overrides and masked display."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from runwright.config import Settings, mask_url_password

VARIABLES = [
    "HOME",
    "DATABASE_URL",
    "STORAGE_URL",
    "TASKS",
    "HEARTBEAT_INTERVAL",
    "LEASE_TIMEOUT",
    "POLL_INTERVAL",
    "SHUTDOWN_GRACE",
    "RETRY_BASE",
    "RETRY_CAP",
    "URL",
    "TOKEN",
    "SECRET_KEY",
    "S3_SECRET_ACCESS_KEY",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RUNWRIGHT_* variable of the developer's shell leaks into these tests."""
    for name in VARIABLES:
        monkeypatch.delenv(f"RUNWRIGHT_{name}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def test_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.heartbeat_interval == 5.0
    assert settings.lease_timeout == 30.0
    assert settings.poll_interval == 1.0
    assert settings.shutdown_grace == 30.0
    assert settings.retry_base == 1.0
    assert settings.retry_cap == 300.0
    assert settings.tasks == ()
    assert settings.home == tmp_path / "user" / ".runwright"
    assert (
        settings.effective_database_url
        == f"sqlite:///{tmp_path / 'user' / '.runwright'}/runwright.db"
    )
    assert (
        settings.effective_storage_url == (tmp_path / "user" / ".runwright" / "artifacts").as_uri()
    )


def test_every_value_comes_from_its_runwright_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = {
        "HOME": str(tmp_path / "rw"),
        "DATABASE_URL": "postgresql://app:pw@db:5432/jobs",
        "STORAGE_URL": "file:///srv/artifacts",
        "HEARTBEAT_INTERVAL": "2.5",
        "LEASE_TIMEOUT": "12",
        "POLL_INTERVAL": "0.25",
        "SHUTDOWN_GRACE": "0",
        "RETRY_BASE": "0.5",
        "RETRY_CAP": "9",
        "URL": "http://jobs:8080",
        "TOKEN": "tok",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"RUNWRIGHT_{name}", value)
    settings = Settings()
    assert settings.home == tmp_path / "rw"
    assert settings.database_url == "postgresql://app:pw@db:5432/jobs"
    assert settings.effective_database_url == "postgresql://app:pw@db:5432/jobs"
    assert settings.effective_storage_url == "file:///srv/artifacts"
    assert settings.heartbeat_interval == 2.5
    assert settings.lease_timeout == 12.0
    assert settings.poll_interval == 0.25
    assert settings.shutdown_grace == 0.0
    assert settings.retry_base == 0.5
    assert settings.retry_cap == 9.0
    assert settings.url == "http://jobs:8080"
    assert settings.token == "tok"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a,b", ("a", "b")),
        ("myapp.tasks", ("myapp.tasks",)),
        (" a , b ,, c ", ("a", "b", "c")),
        ("", ()),
    ],
)
def test_tasks_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("RUNWRIGHT_TASKS", raw)
    assert Settings().tasks == expected


def test_home_expands_the_user_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNWRIGHT_HOME", "~/jobs")
    assert Settings().home == tmp_path / "user" / "jobs"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEARTBEAT_INTERVAL", "0"),
        ("LEASE_TIMEOUT", "-1"),
        ("POLL_INTERVAL", "0"),
        ("SHUTDOWN_GRACE", "-0.5"),
        ("RETRY_BASE", "-1"),
        ("LEASE_TIMEOUT", "soon"),
    ],
)
def test_impossible_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"RUNWRIGHT_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.lease_timeout = 1.0  # type: ignore[misc]


def test_with_overrides_replaces_given_values_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNWRIGHT_LEASE_TIMEOUT", "12")
    monkeypatch.setenv("RUNWRIGHT_TASKS", "a,b")
    base = Settings()
    changed = base.with_overrides(heartbeat_interval=1.0, database_url=None, tasks=("c",))
    assert changed.heartbeat_interval == 1.0
    assert changed.lease_timeout == 12.0  # from the environment, kept
    assert changed.tasks == ("c",)
    assert changed.database_url == base.database_url  # None means "not given"
    assert base.heartbeat_interval == 5.0  # the original is unchanged


def test_with_overrides_validates() -> None:
    with pytest.raises(ValidationError):
        Settings().with_overrides(lease_timeout=0)


def test_with_overrides_accepts_a_comma_string_for_tasks() -> None:
    assert Settings().with_overrides(tasks="x, y").tasks == ("x", "y")


def test_describe_masks_secrets_and_the_database_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNWRIGHT_DATABASE_URL", "postgresql://app:hunter2@db:5432/jobs")
    monkeypatch.setenv("RUNWRIGHT_TOKEN", "api-token-value")
    monkeypatch.setenv("RUNWRIGHT_SECRET_KEY", "very-secret")
    monkeypatch.setenv("RUNWRIGHT_S3_SECRET_ACCESS_KEY", "s3-secret")
    monkeypatch.setenv("RUNWRIGHT_TASKS", "a,b")
    shown = Settings().describe()
    assert set(shown) == set(Settings.model_fields)
    assert shown["database_url"] == "postgresql://app:****@db:5432/jobs"
    assert shown["token"] == "****"
    assert shown["secret_key"] == "****"
    assert shown["s3_secret_access_key"] == "****"
    assert shown["tasks"] == "a,b"
    assert shown["lease_timeout"] == "30.0"
    text = repr(shown)
    for secret in ("hunter2", "api-token-value", "very-secret", "s3-secret"):
        assert secret not in text


def test_describe_says_when_secrets_are_not_set(tmp_path: Path) -> None:
    shown = Settings().describe()
    assert shown["token"] == "(not set)"
    assert shown["secret_key"] == "(not set)"
    assert shown["database_url"].startswith("sqlite:///")
    assert shown["storage_url"].startswith("file://")
    assert shown["home"] == str(tmp_path / "user" / ".runwright")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:****@h/db"),
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:****@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:****@h/db"),  # '@' in the password
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # no password
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url_password(url: str, expected: str) -> None:
    assert mask_url_password(url) == expected
