"""Keys for secrets at rest: several keys (first encrypts, all decrypt), the key file
(mode 0600, one key per line) and a box that notices when a rotation rewrote it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from runwright.config import Settings
from runwright.errors import ConfigError
from runwright.services.secrets import (
    KEY_FILE,
    SecretBox,
    is_fernet_key,
    parse_keys,
    write_key_file,
)

K1, K2, K3 = (Fernet.generate_key().decode() for _ in range(3))


def test_parse_keys_splits_fernet_keys_and_keeps_a_passphrase_whole() -> None:
    assert parse_keys(K1) == [K1.encode()]
    assert parse_keys(f" {K1} , {K2},{K3} ") == [K1.encode(), K2.encode(), K3.encode()]
    assert parse_keys(f"{K1},") == [K1.encode()]
    # A passphrase may contain commas: only Fernet keys are split off, in front of it.
    assert parse_keys("correct,horse,battery") == parse_keys("correct,horse,battery")
    (one,) = parse_keys("correct,horse,battery")
    assert is_fernet_key(one.decode())
    new, old = parse_keys(f"{K1},correct,horse,battery")
    assert (new, old) == (K1.encode(), one)


def test_is_fernet_key() -> None:
    assert is_fernet_key(K1)
    assert not is_fernet_key("correct horse battery staple")
    assert not is_fernet_key(K1[:-4])
    assert not is_fernet_key("!" * 44)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old_box = SecretBox([K2.encode()])
    both = SecretBox([K1.encode(), K2.encode()])
    old_token = old_box.encrypt("old secret")
    new_token = both.encrypt("new secret")
    assert both.decrypt(old_token) == "old secret"
    assert SecretBox([K1.encode()]).decrypt(new_token) == "new secret"
    with pytest.raises(ConfigError, match="cannot be decrypted with this secret key"):
        old_box.decrypt(new_token)


def test_from_settings_reads_several_keys_from_the_variable(tmp_path: Path) -> None:
    token = SecretBox([K2.encode()]).encrypt("x")
    box = SecretBox.from_settings(Settings(home=tmp_path, secret_key=f"{K1},{K2}"))
    assert box.decrypt(token) == "x"
    assert SecretBox([K1.encode()]).decrypt(box.encrypt("y")) == "y"
    assert not (tmp_path / KEY_FILE).exists()


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    first = SecretBox.from_settings(settings)
    path = settings.home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretBox.from_settings(settings).decrypt(first.encrypt("same key")) == "same key"
    assert len(path.read_text().split()) == 1


def test_a_box_reads_the_key_file_again_after_a_rotation_rewrote_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    path = tmp_path / KEY_FILE
    write_key_file(path, [K1.encode()])
    running = SecretBox.from_settings(settings)
    assert SecretBox([K1.encode()]).decrypt(running.encrypt("before")) == "before"

    write_key_file(path, [K2.encode(), K1.encode()])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A value encrypted elsewhere with the new key: decrypting reloads the file.
    assert running.decrypt(SecretBox([K2.encode()]).encrypt("rotated")) == "rotated"
    # Encrypting after the change uses the new first key.
    write_key_file(path, [K3.encode(), K2.encode()])
    token = running.encrypt("after")
    assert SecretBox([K3.encode()]).decrypt(token) == "after"
    with pytest.raises(ConfigError):
        SecretBox([K2.encode()]).decrypt(token)


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(f"{K1}\nnot a key\n")
    with pytest.raises(ConfigError, match=r"line 2 is not a Fernet key.*restore it from a backup"):
        SecretBox.from_settings(Settings(home=tmp_path))
    path.write_text("\n")
    with pytest.raises(ConfigError, match="it is empty"):
        SecretBox.from_settings(Settings(home=tmp_path))


def test_an_unchanged_key_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    write_key_file(path, [K1.encode()])
    box = SecretBox.from_settings(Settings(home=tmp_path))
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        box.decrypt(SecretBox([K2.encode()]).encrypt("foreign"))
    path.unlink()  # gone: the box keeps the keys it has
    assert box.decrypt(box.encrypt("still works")) == "still works"
