"""`runwright secrets rotate-key` underneath (services.secrets.rotate_key), on SQLite and
PostgreSQL: every credential, sensitive variable and webhook signing secret is
re-encrypted with the new key in one transaction and stays usable, through the key file
(also by a process that was already running) and through RUNWRIGHT_SECRET_KEY; a value
that does not decrypt stops the rotation before anything changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from runwright.config import Settings
from runwright.db.tables import credentials, variables, webhooks
from runwright.errors import ConfigError, InvalidRequest
from runwright.model.targets import SecretPart
from runwright.services.jobs import JobSettings
from runwright.services.runtime import Runtime
from runwright.services.secrets import KEY_FILE, SecretBox, rotate_key
from tests.helpers import make_registry

USER_KEY = asyncssh.generate_private_key("ssh-ed25519")
PLAIN_KEY = USER_KEY.export_private_key().decode()
LOCKED_KEY = USER_KEY.export_private_key("pkcs8-pem", passphrase="open sesame").decode()
SECRETS = {
    "by-password": SecretPart(password="pw-by-password"),
    "by-key": SecretPart(private_key=PLAIN_KEY),
    "by-locked-key": SecretPart(private_key=LOCKED_KEY, passphrase="open sesame"),
}


@dataclass
class Stored:
    job_id: int
    webhook_secret: str


def fill(runtime: Runtime) -> Stored:
    for name, secret in SECRETS.items():
        runtime.credentials.create(name, username="ops", secret=secret, tags=["web"])
    job = runtime.jobs.create("export", JobSettings(kind="task", task_type="echo"))
    runtime.variables.set("api_token", "tok-123", sensitive=True)
    runtime.variables.set("db", {"password": "pw-db"}, job="export", sensitive=True)
    runtime.variables.set("region", "eu-west")
    issued = runtime.webhooks.create("export", signed=True)
    runtime.webhooks.create("export")  # unsigned: no secret to re-encrypt
    assert issued.secret is not None
    return Stored(job.id, issued.secret)


def tokens(runtime: Runtime) -> dict[str, str]:
    with runtime.engine.connect() as conn:
        found = {f"credential {r.name}": r.secret for r in conn.execute(sa.select(credentials))}
        found.update({f"variable {r.name}": r.value for r in conn.execute(sa.select(variables))})
        query = sa.select(webhooks).where(webhooks.c.secret.is_not(None))
        found.update({f"webhook {r.id}": r.secret for r in conn.execute(query)})
    return found


def assert_usable(runtime: Runtime, stored: Stored, box: SecretBox) -> None:
    ids = {c.name: c.id for c in runtime.credentials.candidates()}
    unlocked = runtime.credentials.unlock(list(ids.values()))
    assert {name: unlocked[ids[name]].secret for name in SECRETS} == SECRETS
    resolved = runtime.variables.resolve(stored.job_id)
    assert resolved.values == {
        "api_token": "tok-123",
        "db": {"password": "pw-db"},
        "region": "eu-west",
    }
    (token,) = [v for k, v in tokens(runtime).items() if k.startswith("webhook")]
    assert box.decrypt(token) == stored.webhook_secret


def opens(key: bytes, token: str) -> bool:
    try:
        Fernet(key).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
    yield rt
    rt.close()


def key_lines(settings: Settings) -> list[bytes]:
    return [line.encode() for line in (settings.home / KEY_FILE).read_text().split()]


# -- the key file --------------------------------------------------------------------------------
def test_rotating_the_key_file_keeps_everything_usable_even_in_a_running_process(
    runtime: Runtime, settings: Settings
) -> None:
    stored = fill(runtime)
    before = tokens(runtime)
    (old,) = key_lines(settings)

    done = rotate_key(settings, runtime.engine)
    assert (done.rewritten.credentials, done.rewritten.variables, done.rewritten.webhooks) == (
        3,
        2,
        1,
    )
    assert done.key_file == settings.home / KEY_FILE
    assert (done.new_key, done.same_key) == (None, False)
    new, kept = key_lines(settings)
    assert kept == old  # for decryption only, until the next rotation
    after = tokens(runtime)
    assert after["variable region"] == before["variable region"] == '"eu-west"'
    changed = {k for k in before if before[k] != after[k]}
    assert changed == set(before) - {"variable region"}
    for name in changed:
        assert opens(new, after[name]), name
        assert not opens(old, after[name]), name

    # The runtime opened before the rotation reads the new file when a value needs it.
    assert_usable(runtime, stored, SecretBox.from_settings(settings))
    fresh = Runtime.open(settings, registry=make_registry())
    try:
        assert_usable(fresh, stored, SecretBox.from_settings(settings))
        fresh.credentials.create("later", username="u", secret=SecretPart(password="x"))
    finally:
        fresh.close()
    assert opens(new, tokens(runtime)["credential later"])

    # The next rotation drops the oldest key; everything is still usable.
    rotate_key(settings, runtime.engine)
    newest, previous = key_lines(settings)
    assert previous == new
    assert old not in (newest, previous)
    assert_usable(runtime, stored, SecretBox.from_settings(settings))
    assert all(
        opens(newest, token) for k, token in tokens(runtime).items() if k != "variable region"
    )


def test_rotating_to_the_current_key_drops_the_older_ones(
    runtime: Runtime, settings: Settings
) -> None:
    stored = fill(runtime)
    rotate_key(settings, runtime.engine)
    current, _ = key_lines(settings)
    done = rotate_key(settings, runtime.engine, current.decode())
    assert done.same_key is True
    assert key_lines(settings) == [current]
    assert_usable(runtime, stored, SecretBox([current]))


def test_a_value_that_does_not_decrypt_stops_the_rotation_before_anything_changes(
    runtime: Runtime, settings: Settings
) -> None:
    fill(runtime)
    foreign = Runtime.open(settings.with_overrides(secret_key="another installation's key"))
    try:
        foreign.credentials.create("foreign", username="u", secret=SecretPart(password="x"))
    finally:
        foreign.close()
    before = tokens(runtime)
    key_file = (settings.home / KEY_FILE).read_bytes()
    with pytest.raises(ConfigError) as caught:
        rotate_key(settings, runtime.engine)
    assert caught.value.message.startswith(
        "Cannot rotate the secret key: the credential 'foreign' cannot be decrypted with the "
        "current key, so it would be lost. Nothing was changed."
    )
    assert tokens(runtime) == before
    assert (settings.home / KEY_FILE).read_bytes() == key_file

    with pytest.raises(InvalidRequest, match="The new key is not a Fernet key"):
        rotate_key(settings, runtime.engine, "a passphrase is not enough")
    assert tokens(runtime) == before


# -- RUNWRIGHT_SECRET_KEY ------------------------------------------------------------------------
def test_rotating_the_variable_needs_the_new_key_everywhere(settings: Settings) -> None:
    old = Fernet.generate_key().decode()
    with_old = settings.with_overrides(secret_key=old)
    runtime = Runtime.open(with_old, registry=make_registry())
    try:
        stored = fill(runtime)
        before = tokens(runtime)
        done = rotate_key(with_old, runtime.engine)
        assert done.key_file is None
        assert done.new_key is not None
        new = done.new_key
        assert not (settings.home / KEY_FILE).exists()
        after = tokens(runtime)
        assert {k for k in before if before[k] != after[k]} == set(before) - {"variable region"}

        # A process still on the old key cannot decrypt, and says so.
        with pytest.raises(ConfigError, match="cannot be decrypted with this process's"):
            runtime.credentials.unlock([c.id for c in runtime.credentials.candidates()])
    finally:
        runtime.close()

    for value in (f"{new},{old}", new):
        restarted = Runtime.open(settings.with_overrides(secret_key=value))
        try:
            assert_usable(restarted, stored, SecretBox.from_settings(restarted.settings))
        finally:
            restarted.close()

    # Given on stdin (not shown again); then a pass with the key that comes first.
    chosen = Fernet.generate_key().decode()
    both = settings.with_overrides(secret_key=f"{new},{old}")
    engine_owner = Runtime.open(both)
    try:
        given = rotate_key(both, engine_owner.engine, chosen)
        assert (given.new_key, given.same_key) == (None, False)
        again = rotate_key(
            settings.with_overrides(secret_key=f"{chosen},{new}"), engine_owner.engine, chosen
        )
        assert again.same_key is True
        everything = tokens(engine_owner)
    finally:
        engine_owner.close()
    assert all(
        opens(chosen.encode(), token) for k, token in everything.items() if k != "variable region"
    )
    only_new = Runtime.open(settings.with_overrides(secret_key=chosen))
    try:
        assert_usable(only_new, stored, SecretBox.from_settings(only_new.settings))
    finally:
        only_new.close()


def test_keys_stay_out_of_files_when_the_variable_is_set(
    tmp_path: Path, settings: Settings
) -> None:
    home = settings.home
    runtime = Runtime.open(settings.with_overrides(secret_key="a long passphrase, with commas"))
    try:
        fill(runtime)
        done = rotate_key(runtime.settings, runtime.engine)
        assert done.new_key is not None
        restarted = settings.with_overrides(
            secret_key=f"{done.new_key},a long passphrase, with commas"
        )
    finally:
        runtime.close()
    again = Runtime.open(restarted)
    try:
        ids = [c.id for c in again.credentials.candidates()]
        assert len(again.credentials.unlock(ids)) == 3
    finally:
        again.close()
    assert not (home / KEY_FILE).exists()
    assert tmp_path.exists()
