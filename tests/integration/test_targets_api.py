"""Targets and credentials over the REST API, on SQLite and PostgreSQL, through FastAPI's
TestClient: CRUD, every refusal as a 4xx that names the field (and stores nothing), the
import report, host keys, and what workers ask (select, trust on first use, unlock,
record_use). Every response is checked by a hook: none may be a 5xx."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.errors import ConfigError
from runwright.model.targets import SecretPart
from runwright.services.runtime import Runtime
from tests.conftest import need_service
from tests.helpers import admin_headers, make_registry, no_server_errors

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519", comment="root@web-1")
PUBLIC = HOST_KEY.export_public_key().decode()  # "ssh-ed25519 AAAA... root@web-1\n"
NORMALISED = " ".join(PUBLIC.split()[:2])
USER_KEY = asyncssh.generate_private_key("ssh-ed25519")
PLAIN_KEY = USER_KEY.export_private_key().decode()
LOCKED_KEY = USER_KEY.export_private_key("pkcs8-pem", passphrase="open sesame").decode()

TARGET_KEYS = {
    "id",
    "name",
    "address",
    "port",
    "driver",
    "tags",
    "vars",
    "enabled",
    "host_key",
    "known_host_key",
    "description",
    "created_at",
    "updated_at",
}
CREDENTIAL_KEYS = {
    "id",
    "name",
    "username",
    "kind",
    "priority",
    "tags",
    "description",
    "created_at",
    "updated_at",
    "last_used_at",
    "successes",
    "failures",
    "success_rate",
}


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(
        create_app(runtime),
        raise_server_exceptions=False,
        headers=admin_headers(runtime),
    ) as test_client:
        test_client.event_hooks = {"request": [], "response": [no_server_errors]}
        yield test_client


def ok(response: Any, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return response.json() if response.content else None


def refused(response: Any, code: int = 422) -> str:
    assert response.status_code == code, response.text
    message: str = response.json()["error"]
    return message


def add_target(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(
        client.post("/api/targets", json={"name": name, "address": f"{name}.lan", **fields}), 201
    )
    return data


def names(client: TestClient, path: str = "/api/targets") -> list[str]:
    return [item["name"] for item in ok(client.get(path))]


# -- targets: CRUD -------------------------------------------------------------------------------
def test_target_add_show_list_update_and_remove(client: TestClient) -> None:
    web = add_target(client, "web-1", tags=["web", "prod"], vars={"rack": 4}, description="front")
    assert set(web) == TARGET_KEYS
    assert web["address"] == "web-1.lan"
    assert (web["port"], web["driver"], web["enabled"]) == (22, "ssh", True)
    assert (web["tags"], web["vars"], web["description"]) == (["web", "prod"], {"rack": 4}, "front")
    assert (web["host_key"], web["known_host_key"]) == (None, None)
    add_target(client, "db-1", tags=["db"], port=2222, driver="local", enabled=False)
    add_target(client, "a-bare")

    assert ok(client.get("/api/targets/web-1")) == web
    assert names(client) == ["a-bare", "db-1", "web-1"]
    assert names(client, "/api/targets?tag=db") == ["db-1"]
    assert names(client, "/api/targets?tag=nothing") == []
    assert "tag 'bad tag' is not valid" in refused(client.get("/api/targets?tag=bad tag"))

    changed = ok(
        client.patch(
            "/api/targets/web-1",
            json={"port": 2200, "tags": ["web", "edge"], "enabled": False, "host_key": PUBLIC},
        )
    )
    assert (changed["port"], changed["tags"], changed["enabled"]) == (2200, ["web", "edge"], False)
    assert changed["host_key"] == NORMALISED
    assert (changed["vars"], changed["description"]) == ({"rack": 4}, "front")  # kept
    assert changed["updated_at"] >= web["updated_at"]
    unpinned = ok(client.patch("/api/targets/web-1", json={"host_key": None}))
    assert unpinned["host_key"] is None

    assert client.delete("/api/targets/web-1").status_code == 204
    assert (
        refused(client.get("/api/targets/web-1"), 404)
        == "Target 'web-1' does not exist; list targets with `runwright target list`."
    )
    assert "does not exist" in refused(client.delete("/api/targets/web-1"), 404)
    assert "does not exist" in refused(client.patch("/api/targets/web-1", json={"port": 1}), 404)
    assert names(client) == ["a-bare", "db-1"]


TARGET_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"name": "web 1"}, 422, "Target name 'web 1' is not valid: use 1 to 200 letters"),
    ({"name": ""}, 422, "name is required: how jobs and people refer to the target."),
    ({"address": ""}, 422, "address is required: a host name or IP address."),
    ({"address": "user@host"}, 422, "address 'user@host' is not valid: give a host name or an IP"),
    ({"address": "h" * 256}, 422, "is not valid: give a host name or an IP address"),
    ({"port": 0}, 422, "port 0 is not valid: use a number from 1 to 65535."),
    ({"port": 65536}, 422, "port 65536 is not valid: use a number from 1 to 65535."),
    ({"port": "ssh"}, 422, "port: Input should be a valid integer"),
    ({"driver": "telnet"}, 422, "driver 'telnet' is not known: use ssh (a remote host) or local"),
    ({"tags": ["ok", "not ok"]}, 422, "tag 'not ok' is not valid: use 1 to 100 letters"),
    ({"vars": [1, 2]}, 422, "vars: Input should be a valid dictionary"),
    ({"host_key": "ssh-ed25519 AAAA"}, 422, "host_key is not an SSH public key: give one line"),
    ({"host_key": PLAIN_KEY}, 422, "host_key is a private key: give the host's public key"),
    ({"description": "x" * 1001}, 422, "description is 1,001 characters; the limit is 1,000."),
    ({"adress": "typo"}, 422, "adress: Extra inputs are not permitted"),
]


def test_target_refusals_name_the_field_and_store_nothing(client: TestClient) -> None:
    add_target(client, "taken")
    for given, code, message in TARGET_REFUSALS:
        body = {"name": "new-1", "address": "10.0.0.1", **given}
        assert message in refused(client.post("/api/targets", json=body), code), given
    assert (
        refused(client.post("/api/targets", json={"name": "taken", "address": "x"}), 409)
        == "Target 'taken' already exists; change it with `runwright target update taken` "
        "(PATCH /api/targets/taken)."
    )
    assert names(client) == ["taken"]

    before = ok(client.get("/api/targets/taken"))
    patches: list[tuple[dict[str, Any], str]] = [
        ({"port": None}, "port cannot be null; leave it out to keep it."),
        ({"address": None}, "address cannot be null"),
        ({"port": 99999}, "port 99999 is not valid"),
        ({"name": "renamed"}, "name: Extra inputs are not permitted"),
        ({"driver": "rdp", "port": 2222}, "driver 'rdp' is not known"),
    ]
    for body, message in patches:
        assert message in refused(client.patch("/api/targets/taken", json=body)), body
    assert ok(client.get("/api/targets/taken")) == before


def test_host_keys_pinned_normalised_recorded_once_and_forgotten(
    client: TestClient, runtime: Runtime
) -> None:
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    rfc4716 = rsa.export_public_key("rfc4716").decode()
    pinned = add_target(client, "pinned", host_key=rfc4716)
    assert pinned["host_key"] == " ".join(rsa.export_public_key().decode().split()[:2])
    assert pinned["host_key"].startswith("ssh-rsa AAAA")
    fresh = add_target(client, "fresh", host_key="")
    assert fresh["host_key"] is None

    runtime.targets.record_host_key(fresh["id"], NORMALISED)
    runtime.targets.record_host_key(fresh["id"], "ssh-ed25519 AAAAsomethingelse")  # kept first
    assert ok(client.get("/api/targets/fresh"))["known_host_key"] == NORMALISED

    forgot = ok(client.post("/api/targets/fresh/forget-host-key"))
    assert forgot["known_host_key"] is None
    runtime.targets.record_host_key(fresh["id"], "ssh-ed25519 AAAAnewhost")
    assert ok(client.get("/api/targets/fresh"))["known_host_key"] == "ssh-ed25519 AAAAnewhost"

    runtime.targets.record_host_key(pinned["id"], NORMALISED)
    kept = ok(client.post("/api/targets/pinned/forget-host-key"))
    assert (kept["host_key"], kept["known_host_key"]) == (pinned["host_key"], None)
    assert "does not exist" in refused(client.post("/api/targets/nope/forget-host-key"), 404)


def test_select_gives_enabled_targets_with_any_tag_by_name(
    client: TestClient, runtime: Runtime
) -> None:
    add_target(client, "web-2", tags=["web"])
    add_target(client, "web-1", tags=["web", "eu"])
    add_target(client, "off", tags=["web"], enabled=False)
    add_target(client, "db-1", tags=["db", "eu"])
    assert [t.name for t in runtime.targets.select(["web"])] == ["web-1", "web-2"]
    assert [t.name for t in runtime.targets.select(["eu", "db"])] == ["db-1", "web-1"]
    assert runtime.targets.select(["none"]) == []
    (web1,) = [t for t in runtime.targets.select(["eu"]) if t.name == "web-1"]
    assert (web1.address, web1.tags, web1.port) == ("web-1.lan", ("web", "eu"), 22)


# -- import --------------------------------------------------------------------------------------
CSV = """\
name,address,port,driver,tags,vars,enabled,description
web-1,10.0.0.1,2222,ssh,"web, prod","{""rack"": 4}",yes,front end
web-2,10.0.0.2,,,web prod,,,
bad name,10.0.0.3,,,,,,
web-3,10.0.0.4,70000,,,,,
web-4,10.0.0.5,,,"web,bad/tag",,,

db-1,10.0.1.1,,local,db,"{""a"": [1, 2]}",false,
db-2,10.0.1.2,,,db,not json,,
web-2,10.0.0.9,,,,,,
db-3,,,,,,,
db-4,10.0.1.4,,,db,,maybe,
db-5,10.0.1.5,22,ssh,db,{},true,too,many
"multi
line",10.0.2.1,,,,,,
"""


def test_import_csv_reports_every_row_and_stores_the_valid_ones(client: TestClient) -> None:
    existing = add_target(client, "web-2", address="old.lan", tags=["old"], host_key=PUBLIC)
    report = ok(
        client.post("/api/targets/import", content=CSV, headers={"content-type": "text/csv"})
    )
    rows = [(r["row"], r["name"], r["status"], r["field"]) for r in report["rows"]]
    assert rows == [
        (2, "web-1", "created", None),
        (3, "web-2", "updated", None),
        (4, "bad name", "refused", "name"),
        (5, "web-3", "refused", "port"),
        (6, "web-4", "refused", "tags"),
        (8, "db-1", "created", None),
        (9, "db-2", "refused", "vars"),
        (10, "web-2", "refused", "name"),
        (11, "db-3", "refused", "address"),
        (12, "db-4", "refused", "enabled"),
        (13, None, "refused", "row"),
        (14, "multi\nline", "refused", "name"),
    ]
    errors = {r["row"]: r["error"] for r in report["rows"]}
    assert errors[5] == "port '70000' is not valid: use a number from 1 to 65535."
    assert errors[9].startswith("vars is not valid JSON (Expecting value")
    assert errors[10] == "target 'web-2' is already in row 3; give each name once."
    assert errors[11] == "address is required: a host name or IP address."
    assert errors[12] == "enabled must be true or false, got 'maybe'."
    assert errors[13] == "line 13 has 9 cells, more than the header's columns."
    assert (report["created"], report["updated"], report["refused"]) == (2, 1, 9)
    assert report["dry_run"] is False

    assert names(client) == ["db-1", "web-1", "web-2"]
    web1 = ok(client.get("/api/targets/web-1"))
    assert (web1["address"], web1["port"], web1["tags"]) == ("10.0.0.1", 2222, ["web", "prod"])
    assert (web1["vars"], web1["enabled"], web1["description"]) == ({"rack": 4}, True, "front end")
    db1 = ok(client.get("/api/targets/db-1"))
    assert (db1["driver"], db1["enabled"], db1["vars"]) == ("local", False, {"a": [1, 2]})
    web2 = ok(client.get("/api/targets/web-2"))
    # Empty cells are defaults; a column the file does not have (host_key) is kept.
    assert (web2["address"], web2["port"], web2["tags"]) == ("10.0.0.2", 22, ["web", "prod"])
    assert (web2["enabled"], web2["description"]) == (True, "")
    assert web2["host_key"] == NORMALISED
    assert web2["created_at"] == existing["created_at"]


def test_import_dry_run_reports_the_same_and_stores_nothing(client: TestClient) -> None:
    add_target(client, "web-2")
    before = ok(client.get("/api/targets"))
    dry = ok(
        client.post(
            "/api/targets/import?dry_run=true", content=CSV, headers={"content-type": "text/csv"}
        )
    )
    assert dry["dry_run"] is True
    assert (dry["created"], dry["updated"], dry["refused"]) == (2, 1, 9)
    assert ok(client.get("/api/targets")) == before


def test_import_json_round_trips_a_listing_and_refuses_bad_items(client: TestClient) -> None:
    add_target(client, "web-1", tags=["web"], vars={"rack": 1}, host_key=PUBLIC)
    add_target(client, "web-2", tags=["web"], enabled=False)
    listing = ok(client.get("/api/targets"))
    again = ok(client.post("/api/targets/import", json=listing))
    assert [(r["name"], r["status"]) for r in again["rows"]] == [
        ("web-1", "updated"),
        ("web-2", "updated"),
    ]
    after = ok(client.get("/api/targets"))
    strip = ("updated_at",)
    assert [{k: v for k, v in t.items() if k not in strip} for t in after] == [
        {k: v for k, v in t.items() if k not in strip} for t in listing
    ]

    items: list[Any] = [
        {"name": "new-1", "address": "n1", "tags": "a b", "port": "2200"},
        {"name": "new-2", "address": "n2", "adress": "typo"},
        "not an object",
        {"name": 7, "address": "n3"},
        {"name": "new-4", "address": "n4", "enabled": "no", "vars": {"x": None}},
        {"name": "new-5", "address": "n5", "port": True},
        {"name": "new-6", "address": "n6", "tags": [1]},
        {"name": "new-7", "address": "n7", "port": None, "vars": None, "description": None},
    ]
    report = ok(client.post("/api/targets/import", json=items))
    assert [(r["row"], r["name"], r["status"], r["field"]) for r in report["rows"]] == [
        (1, "new-1", "created", None),
        (2, "new-2", "refused", "adress"),
        (3, None, "refused", "row"),
        (4, None, "refused", "name"),
        (5, "new-4", "created", None),
        (6, "new-5", "refused", "port"),
        (7, "new-6", "refused", "tags"),
        (8, "new-7", "created", None),
    ]
    assert report["rows"][1]["error"].startswith("'adress' is not a target field; the fields")
    assert report["rows"][3]["error"] == "name must be text, got int."
    new1 = ok(client.get("/api/targets/new-1"))
    assert (new1["port"], new1["tags"]) == (2200, ["a", "b"])
    new4 = ok(client.get("/api/targets/new-4"))
    assert (new4["enabled"], new4["vars"]) == (False, {"x": None})
    new7 = ok(client.get("/api/targets/new-7"))
    assert (new7["port"], new7["vars"], new7["description"]) == (22, {}, "")


def test_import_refuses_unreadable_files_as_a_whole(client: TestClient) -> None:
    def post(content: bytes | str, content_type: str) -> Any:
        return client.post(
            "/api/targets/import", content=content, headers={"content-type": content_type}
        )

    cases: list[tuple[bytes | str, str, int, str]] = [
        ("name,adress\nx,y\n", "text/csv", 422, "CSV column 'adress' is not known; the columns"),
        ("name,port\nx,22\n", "text/csv", 422, "The CSV file has no 'address' column"),
        ("name,address,name\n", "text/csv", 422, "A CSV column appears twice"),
        ("\n\n", "text/csv", 422, "The CSV file is empty: start it with a header line"),
        ('name,address\n"open', "text/csv", 422, "The CSV file cannot be read at line"),
        ("[{", "application/json", 422, "The JSON file is not valid JSON"),
        ('{"name": "x"}', "application/json", 422, "The JSON file must hold a list of targets"),
        (b"name,address\n\xff\xfe,x\n", "text/csv", 422, "The file is not UTF-8 text (byte 13)"),
        ("name,address\n", "text/plain", 415, "Send the file with Content-Type text/csv or"),
        ("x" * (5 * 1024 * 1024 + 1), "text/csv", 413, "The file is larger than 5,242,880 bytes"),
    ]
    for content, content_type, code, message in cases:
        assert message in refused(post(content, content_type), code), message
    many = "name,address\n" + "".join(f"t{i},h{i}\n" for i in range(10_001))
    assert "The file has 10,001 targets; the limit is 10,000 per import" in refused(
        post(many, "text/csv")
    )
    bom = "\ufeffname,address\nfrom-excel,10.0.0.1\n"
    assert ok(post(bom.encode(), "text/csv; charset=utf-8"))["created"] == 1
    assert names(client) == ["from-excel"]


# -- credentials ---------------------------------------------------------------------------------
def add_credential(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "username": "ops", "tags": ["web"], **fields}
    if "password" not in body and "private_key" not in body:
        body["password"] = "pw-" + name
    data: dict[str, Any] = ok(client.post("/api/credentials", json=body), 201)
    return data


def test_credential_add_show_list_update_and_remove_never_return_the_secret(
    client: TestClient, runtime: Runtime
) -> None:
    pw = add_credential(client, "by-password", password="s3cret-pw", priority=20)
    key = add_credential(client, "by-key", private_key=PLAIN_KEY, tags=["db", "web"])
    locked = add_credential(
        client, "by-locked-key", private_key=LOCKED_KEY, passphrase="open sesame", priority=5
    )
    for item in (pw, key, locked):
        assert set(item) == CREDENTIAL_KEYS
        assert (item["successes"], item["failures"], item["success_rate"]) == (0, 0, None)
        assert item["last_used_at"] is None
    assert (pw["kind"], key["kind"], locked["kind"]) == ("password", "key", "key")
    assert (pw["priority"], key["priority"], key["tags"]) == (20, 100, ["db", "web"])
    assert names(client, "/api/credentials") == ["by-key", "by-locked-key", "by-password"]
    assert ok(client.get("/api/credentials/by-password")) == pw

    unlocked = runtime.credentials.unlock([pw["id"], key["id"], locked["id"], 999_999])
    assert set(unlocked) == {pw["id"], key["id"], locked["id"]}
    assert unlocked[pw["id"]].secret == SecretPart(password="s3cret-pw")
    assert unlocked[key["id"]].secret == SecretPart(private_key=PLAIN_KEY)
    assert unlocked[locked["id"]].secret == SecretPart(
        private_key=LOCKED_KEY, passphrase="open sesame"
    )
    assert unlocked[key["id"]].info.name == "by-key"
    assert runtime.credentials.unlock([]) == {}

    changed = ok(
        client.patch(
            "/api/credentials/by-password",
            json={"username": "root", "priority": 1, "tags": ["edge"], "description": "rotated"},
        )
    )
    assert (changed["username"], changed["priority"], changed["tags"]) == ("root", 1, ["edge"])
    assert (changed["kind"], changed["description"]) == ("password", "rotated")
    assert runtime.credentials.unlock([pw["id"]])[pw["id"]].secret.password == "s3cret-pw"

    to_key = ok(client.patch("/api/credentials/by-password", json={"private_key": PLAIN_KEY}))
    assert set(to_key) == CREDENTIAL_KEYS
    assert to_key["kind"] == "key"
    assert runtime.credentials.unlock([pw["id"]])[pw["id"]].secret == SecretPart(
        private_key=PLAIN_KEY
    )
    back = ok(client.patch("/api/credentials/by-password", json={"password": "new-pw"}))
    assert back["kind"] == "password"
    assert runtime.credentials.unlock([pw["id"]])[pw["id"]].secret == SecretPart(password="new-pw")

    assert client.delete("/api/credentials/by-key").status_code == 204
    message = refused(client.get("/api/credentials/by-key"), 404)
    assert message == (
        "Credential 'by-key' does not exist; list credentials with `runwright credential list`."
    )
    assert "does not exist" in refused(client.delete("/api/credentials/by-key"), 404)
    assert "does not exist" in refused(
        client.patch("/api/credentials/by-key", json={"priority": 1}), 404
    )
    assert names(client, "/api/credentials") == ["by-locked-key", "by-password"]


CREDENTIAL_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"password": None}, 422, "give a password or a private_key (with its passphrase)."),
    ({"private_key": PLAIN_KEY}, 422, "give a password or a private_key, not both."),
    ({"passphrase": "x"}, 422, "a passphrase goes with a private_key, not a password."),
    ({"password": ""}, 422, "password must be 1 to 4,096 characters."),
    ({"password": "p" * 4097}, 422, "password must be 1 to 4,096 characters."),
    (
        {"password": None, "private_key": LOCKED_KEY},
        422,
        "private_key is encrypted: give its passphrase too (field passphrase; --passphrase-stdin",
    ),
    (
        {"password": None, "private_key": LOCKED_KEY, "passphrase": "wrong"},
        422,
        "the passphrase does not decrypt private_key: check it.",
    ),
    (
        {"password": None, "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA"},
        422,
        "private_key is not a private key runwright can read: give the whole key file",
    ),
    ({"password": None, "private_key": PUBLIC}, 422, "private_key is not a private key"),
    ({"password": None, "private_key": "k" * 70_000}, 422, "private_key is larger than 64 KiB"),
    ({"password": None, "passphrase": "x"}, 422, "a passphrase goes with a private_key: give both"),
    ({"name": "bad name"}, 422, "Credential name 'bad name' is not valid: use 1 to 200 letters"),
    ({"username": " "}, 422, "username must be 1 to 200 printable characters"),
    ({"priority": 10**7}, 422, "priority 10000000 is not valid: use a whole number from"),
    ({"tags": ["a b"]}, 422, "tag 'a b' is not valid"),
    ({"description": "d" * 1001}, 422, "description is 1,001 characters"),
    ({"secret": "x"}, 422, "secret: Extra inputs are not permitted"),
    ({"password": 12345}, 422, "password: Input should be a valid string"),
]


def test_credential_refusals_name_the_field_and_store_nothing(client: TestClient) -> None:
    add_credential(client, "taken")
    for given, code, message in CREDENTIAL_REFUSALS:
        body = {"name": "new", "username": "ops", "password": "pw", **given}
        body = {k: v for k, v in body.items() if v is not None}
        assert message in refused(client.post("/api/credentials", json=body), code), given
    assert refused(
        client.post("/api/credentials", json={"name": "taken", "username": "u", "password": "x"}),
        409,
    ) == (
        "Credential 'taken' already exists; change it with `runwright credential update taken` "
        "(PATCH /api/credentials/taken)."
    )
    assert names(client, "/api/credentials") == ["taken"]

    before = ok(client.get("/api/credentials/taken"))
    patches: list[tuple[dict[str, Any], str]] = [
        ({"passphrase": "x"}, "a passphrase goes with a private_key: give both."),
        ({"password": "x", "private_key": PLAIN_KEY}, "not both"),
        ({"private_key": LOCKED_KEY}, "private_key is encrypted"),
        ({"priority": -(10**7)}, "priority -10000000 is not valid"),
        ({"name": "other"}, "name: Extra inputs are not permitted"),
    ]
    for body, message in patches:
        assert message in refused(client.patch("/api/credentials/taken", json=body)), body
    assert ok(client.get("/api/credentials/taken")) == before


def test_an_openssh_key_with_a_passphrase_is_accepted_or_names_what_is_missing(
    client: TestClient, runtime: Runtime, tmp_path: Path
) -> None:
    """ssh-keygen's default format encrypts with bcrypt: with the bcrypt package the key
    is accepted; without it the refusal says what to install or how to convert the key."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        need_service("ssh-keygen (openssh-client) writes the OpenSSH key of this test")
        return
    path = tmp_path / "id_ed25519"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(path)], check=True
    )
    body = {"name": "ed", "username": "u", "private_key": path.read_text()}
    assert "private_key is encrypted: give its passphrase too" in refused(
        client.post("/api/credentials", json=body)
    )
    response = client.post("/api/credentials", json={**body, "passphrase": "pass phrase"})
    if importlib.util.find_spec("bcrypt") is None:
        message = refused(response)
        assert "private_key is an OpenSSH key encrypted with bcrypt" in message
        assert "pip install bcrypt" in message
        assert "ssh-keygen -p -m PEM" in message
        return
    created = ok(response, 201)
    unlocked = runtime.credentials.unlock([created["id"]])[created["id"]]
    assert unlocked.secret.passphrase == "pass phrase"
    wrong = client.post("/api/credentials", json={**body, "name": "ed2", "passphrase": "nope"})
    assert "the passphrase does not decrypt private_key" in refused(wrong)


def test_record_use_counts_in_one_batch_and_shows_the_success_rate(
    client: TestClient, runtime: Runtime
) -> None:
    first = add_credential(client, "first")
    second = add_credential(client, "second")
    unused = add_credential(client, "unused")
    runtime.credentials.record_use(
        [(first["id"], True), (first["id"], False), (first["id"], True), (second["id"], False)]
    )
    runtime.credentials.record_use([(first["id"], True)])
    runtime.credentials.record_use([])
    shown = {c["name"]: c for c in ok(client.get("/api/credentials"))}
    assert (shown["first"]["successes"], shown["first"]["failures"]) == (3, 1)
    assert shown["first"]["success_rate"] == 0.75
    assert (shown["second"]["successes"], shown["second"]["failures"]) == (0, 1)
    assert shown["second"]["success_rate"] == 0.0
    assert shown["first"]["last_used_at"] is not None
    assert shown["unused"]["last_used_at"] is None
    assert shown["unused"]["success_rate"] is None
    assert shown["first"]["updated_at"] == first["updated_at"]  # use is not a change
    candidates = {c.name: c for c in runtime.credentials.candidates()}
    assert set(candidates) == {"first", "second", "unused"}
    assert candidates["first"].success_rate == 0.75
    assert unused["id"] == candidates["unused"].id


def test_unlock_with_another_key_is_a_config_error_naming_the_credential(
    client: TestClient, settings: Settings
) -> None:
    created = add_credential(client, "sealed")
    other = Runtime.open(settings.with_overrides(secret_key="a different key"))
    try:
        with pytest.raises(ConfigError) as caught:
            other.credentials.unlock([created["id"]])
        assert "The secret of credential 'sealed' cannot be decrypted with this process's" in (
            caught.value.message
        )
        assert "same RUNWRIGHT_SECRET_KEY" in caught.value.message
        assert other.credentials.candidates()[0].name == "sealed"  # listing needs no key
    finally:
        other.close()


def test_the_openapi_description_marks_secrets_write_only(client: TestClient) -> None:
    spec = ok(client.get("/openapi.json"))
    body = spec["components"]["schemas"]["CredentialIn"]["properties"]
    for field in ("password", "private_key", "passphrase"):
        assert body[field]["writeOnly"] is True, body[field]
        assert body[field]["format"] == "password", body[field]
    out = spec["components"]["schemas"]["CredentialOut"]["properties"]
    assert not {"password", "private_key", "passphrase", "secret"} & set(out)
    imported = spec["paths"]["/api/targets/import"]["post"]["requestBody"]["content"]
    assert set(imported) == {"text/csv", "application/json"}
