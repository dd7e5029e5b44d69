"""The artifact store contract, run against both backends: a LocalStore in a temporary
folder and an S3Store talking to a real S3 API (moto's server) on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from runwright.artifacts import LocalStore, ObjectInfo, open_store
from runwright.artifacts.base import ArtifactStore
from runwright.artifacts.keys import (
    context_key,
    execution_prefix,
    job_prefix,
    log_key,
    output_key,
    package_key,
)
from runwright.artifacts.s3 import S3Store
from runwright.config import Settings
from runwright.errors import ConfigError, ObjectNotFound, StoreError, StoreUnavailable
from tests.conftest import need_service
from tests.s3server import S3Server, S3ServerFailed, free_port, moto_server

ACCESS_KEY = "rw-test-access"
SECRET_KEY = "rw-test-SECRET-a8f3c61e"
MB = 1024 * 1024


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(moto_server())
        except S3ServerFailed as exc:
            need_service(f"an S3 API server (moto) could not be started: {exc}")
        yield server


def raw_client(server: S3Server) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    name = f"rw-test-{uuid.uuid4().hex[:12]}"
    raw_client(s3_server).create_bucket(Bucket=name)
    return name


def make_s3_store(server: S3Server, bucket: str, prefix: str = "", **extra: Any) -> S3Store:
    return S3Store(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=server.endpoint_url,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        **extra,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """An empty store: a folder, or a fresh prefix in the session's bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return make_s3_store(server, bucket, prefix=f"t-{uuid.uuid4().hex[:10]}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


_BLOCK = bytes(range(251)) * 300


def pattern(total: int) -> bytes:
    return (bytes(range(251)) * (total // 251 + 1))[:total]


class Unseekable(io.RawIOBase):
    """A pipe-like stream of ``total`` bytes of ``pattern``: read-only, no seek; it can
    fail with RuntimeError after ``fail_after`` bytes."""

    def __init__(self, total: int, fail_after: int | None = None) -> None:
        self.left = total
        self.sent = 0
        self.fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise RuntimeError("the producer died")
        n = min(len(buffer), self.left, 64 * 1024)
        start = self.sent % 251
        buffer[:n] = _BLOCK[start : start + n]
        self.left -= n
        self.sent += n
        return n


# -- the contract, on both backends -----------------------------------------------------
def test_put_and_get_roundtrip(store: ArtifactStore) -> None:
    store.put("a.txt", b"hello")
    store.put("jobs/1/packages/x.zip", b"\x00\x01binary\xff")
    assert store.get("a.txt") == b"hello"
    assert store.get("jobs/1/packages/x.zip") == b"\x00\x01binary\xff"
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.size("empty") == 0


def test_overwrite_replaces_the_whole_object(store: ArtifactStore) -> None:
    store.put("k", b"a much longer first version")
    store.put("k", b"short")
    assert store.get("k") == b"short"
    assert store.size("k") == 5
    assert [info.key for info in store.list()] == ["k"]


def test_put_file_of_20_mb_and_download_it_back(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        for _ in range(20):
            handle.write(os.urandom(MB))
    store.put_file("jobs/1/packages/big.zip", source)
    assert store.size("jobs/1/packages/big.zip") == 20 * MB

    target = tmp_path / "out" / "nested" / "big.bin"
    store.download("jobs/1/packages/big.zip", target)
    assert sha256_file(target) == sha256_file(source)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin"]  # no temp left


def test_download_replaces_an_existing_file(store: ArtifactStore, tmp_path: Path) -> None:
    store.put("k", b"new")
    target = tmp_path / "k.txt"
    target.write_bytes(b"old and longer")
    store.download("k", target)
    assert target.read_bytes() == b"new"


def test_put_stream_from_an_unseekable_stream(store: ArtifactStore) -> None:
    total = 9 * MB + 123  # over the multipart threshold of the S3 backend
    store.put_stream("stream.bin", io.BufferedReader(Unseekable(total)))
    assert store.size("stream.bin") == total
    assert store.get("stream.bin") == pattern(total)


def test_open_streams_the_object(store: ArtifactStore) -> None:
    data = pattern(3 * MB + 17)
    store.put("log.txt", b"first line\nsecond line\n" + data)
    with store.open("log.txt") as handle:
        assert handle.readline() == b"first line\n"
        assert handle.readline() == b"second line\n"
        received = bytearray()
        while chunk := handle.read(256 * 1024):
            assert len(chunk) <= 256 * 1024
            received += chunk
    assert bytes(received) == data
    assert handle.closed


def test_exists_size_and_list_with_prefixes(store: ArtifactStore) -> None:
    before = time.time()
    keys = {
        "jobs/1/packages/p.zip": b"12345",
        "jobs/1/executions/7/log.txt": b"log",
        "jobs/1/executions/7/output/reports/sum.csv": b"a,b\n",
        "jobs/10/packages/q.zip": b"q",
        "jobs/2/packages/r.zip": b"rr",
        "top.txt": b"t",
    }
    for key, data in keys.items():
        store.put(key, data)

    assert store.exists("jobs/1/packages/p.zip")
    assert not store.exists("jobs/1/packages/nope.zip")
    assert not store.exists("jobs/1")  # a "folder" is not an object
    assert store.size("jobs/1/executions/7/output/reports/sum.csv") == 4

    everything = list(store.list())
    assert [info.key for info in everything] == sorted(keys)
    assert all(isinstance(info, ObjectInfo) for info in everything)
    assert {info.key: info.size for info in everything} == {k: len(v) for k, v in keys.items()}
    for info in everything:
        assert before - 5 <= info.modified <= time.time() + 5

    assert [i.key for i in store.list("jobs/1/")] == [
        "jobs/1/executions/7/log.txt",
        "jobs/1/executions/7/output/reports/sum.csv",
        "jobs/1/packages/p.zip",
    ]
    # A plain string prefix, as in S3: "jobs/1" also matches "jobs/10/...".
    assert [i.key for i in store.list("jobs/1")] == [
        "jobs/1/executions/7/log.txt",
        "jobs/1/executions/7/output/reports/sum.csv",
        "jobs/1/packages/p.zip",
        "jobs/10/packages/q.zip",
    ]
    assert [i.key for i in store.list("jobs/1/executions/7/output/")] == [
        "jobs/1/executions/7/output/reports/sum.csv"
    ]
    assert [i.key for i in store.list("top")] == ["top.txt"]
    assert list(store.list("nothing/here/")) == []


def test_delete_is_idempotent(store: ArtifactStore) -> None:
    store.put("a/b/c.txt", b"x")
    store.put("a/b/d.txt", b"y")
    store.delete("a/b/c.txt")
    assert not store.exists("a/b/c.txt")
    store.delete("a/b/c.txt")  # again: not an error
    store.delete("never/existed")
    store.delete("a")  # a "folder": nothing to delete
    assert [info.key for info in store.list()] == ["a/b/d.txt"]


INVALID_KEYS = [
    "../x",
    "a/../../x",
    "/x",
    "/etc/passwd",
    "a//b",
    "a/",
    "",
    "a\\b",
    "..\\x",
    "a/./b",
    "nul\x00byte",
    "x" * 1025,
]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_by_every_method(
    store: ArtifactStore, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"data")
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.put_file(key, source),
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.get(key),
        lambda: store.download(key, tmp_path / "out.bin"),
        lambda: store.open(key).__enter__(),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.size(key),
    ]
    shown = repr(key) if len(key) <= 200 else repr(key[:200])
    for call in calls:
        with pytest.raises(StoreError) as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound | StoreUnavailable)
        assert shown in caught.value.message
    assert list(store.list()) == []
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "a\\b"])
def test_invalid_list_prefixes_are_refused(store: ArtifactStore, prefix: str) -> None:
    with pytest.raises(StoreError, match="prefix"):
        store.list(prefix)


def test_reserved_temp_suffix_is_refused(store: ArtifactStore) -> None:
    with pytest.raises(StoreError, match="reserved"):
        store.put("a/.b.0123.rwtmp", b"x")


def test_missing_objects_raise_object_not_found_naming_the_key(
    store: ArtifactStore, tmp_path: Path
) -> None:
    store.put("jobs/1/other.txt", b"x")  # the folder exists, the object does not
    for call in (
        lambda: store.get("jobs/1/missing.txt"),
        lambda: store.size("jobs/1/missing.txt"),
        lambda: store.open("jobs/1/missing.txt").__enter__(),
        lambda: store.download("jobs/1/missing.txt", tmp_path / "out.txt"),
        lambda: store.get("jobs/1"),  # a "folder"
    ):
        with pytest.raises(ObjectNotFound, match="jobs/1") as caught:
            call()
        assert caught.value.status_code == 404
    assert not (tmp_path / "out.txt").exists()


def test_a_failed_write_leaves_the_previous_object_and_no_temp_file(
    store: ArtifactStore,
) -> None:
    store.put("k", b"old")
    with pytest.raises(RuntimeError, match="producer died"):
        store.put_stream("k", io.BufferedReader(Unseekable(10 * MB, fail_after=2 * MB)))
    with pytest.raises(RuntimeError, match="producer died"):
        store.put_stream("fresh", io.BufferedReader(Unseekable(10 * MB, fail_after=MB)))
    assert store.get("k") == b"old"
    assert not store.exists("fresh")
    assert [info.key for info in store.list()] == ["k"]


def test_describe_names_the_store(store: ArtifactStore) -> None:
    text = store.describe()
    assert text.startswith(("file:///", "s3://"))
    assert SECRET_KEY not in text


# -- LocalStore specifics ----------------------------------------------------------------
def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".rwtmp")]


def test_local_write_is_atomic_and_cleans_up(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.put("a/k", b"old")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(StoreError, match=r"'a/k'.*disk is full"):
        store.put_stream("a/k", Broken())  # type: ignore[arg-type]
    assert (tmp_path / "root" / "a" / "k").read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_local_list_skips_temp_files_of_unfinished_writes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.put("a/k", b"done")
    (tmp_path / "root" / "a" / ".k.abc123.rwtmp").write_bytes(b"half")  # a crash mid-write
    assert [info.key for info in store.list()] == ["a/k"]
    assert [info.key for info in store.list("a/")] == ["a/k"]


def test_local_store_never_writes_outside_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    store = LocalStore(root)

    for call in (
        lambda: store.put("escape/x", b"x"),
        lambda: store.put("escape/deeper/x", b"x"),
        lambda: store.get("escape/secret.txt"),
        lambda: store.delete("escape/secret.txt"),
    ):
        with pytest.raises(StoreError, match=r"'escape/.*outside the store folder"):
            call()
    for key in ("../outside/x", "a/../../outside/x"):
        with pytest.raises(StoreError):
            store.put(key, b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"do not read"
    assert list(store.list()) == []  # links to folders are not followed


def test_local_errors_name_the_key_and_the_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    store.put("a/file", b"x")
    with pytest.raises(StoreError) as caught:
        store.put("a/file/below", b"x")  # 'a/file' is a file, not a folder
    assert "'a/file/below'" in caught.value.message
    assert str(root / "a" / "file") in caught.value.message

    with pytest.raises(ObjectNotFound) as missing:
        store.get("a/none")
    assert "'a/none'" in missing.value.message
    assert str(root / "a" / "none") in missing.value.message


def test_local_permission_errors_become_store_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    store.put("locked/k", b"x")

    def refuse(source: Any, target: Any) -> None:  # root ignores chmod: simulate EACCES
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr("runwright.artifacts.local.os.replace", refuse)
    with pytest.raises(StoreError, match=r"'locked/k'.*permission denied") as caught:
        store.put("locked/k", b"y")
    assert str(root / "locked" / "k") in caught.value.message
    monkeypatch.undo()
    assert store.get("locked/k") == b"x"
    assert temp_files(root) == []


def test_local_store_creates_its_root_lazily(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not" / "yet")
    assert list(store.list()) == []
    assert not store.exists("k")
    assert not (tmp_path / "not").exists()
    store.put("k", b"v")
    assert (tmp_path / "not" / "yet" / "k").read_bytes() == b"v"
    assert store.describe() == (tmp_path / "not" / "yet").as_uri()


# -- S3Store specifics -------------------------------------------------------------------
def test_s3_objects_live_under_the_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    one = make_s3_store(s3_server, s3_bucket, prefix=f"{prefix}/one")
    two = make_s3_store(s3_server, s3_bucket, prefix=f"/{prefix}/two/")  # slashes trimmed
    one.put("k", b"1")
    two.put("k", b"2")
    assert one.get("k") == b"1"
    assert two.get("k") == b"2"
    assert [i.key for i in one.list()] == ["k"]
    client = raw_client(s3_server)
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{prefix}/")["Contents"]
    assert sorted(item["Key"] for item in listed) == [f"{prefix}/one/k", f"{prefix}/two/k"]
    # A folder marker made by some console is not an object of the store.
    client.put_object(Bucket=s3_bucket, Key=f"{prefix}/one/folder/", Body=b"")
    assert [i.key for i in one.list()] == ["k"]
    assert one.describe() == f"s3://{s3_bucket}/{prefix}/one"


def test_s3_without_prefix(s3_server: S3Server) -> None:
    bucket = f"rw-bare-{uuid.uuid4().hex[:10]}"
    raw_client(s3_server).create_bucket(Bucket=bucket)
    store = make_s3_store(s3_server, bucket)
    store.put("jobs/1/log.txt", b"x")
    assert [i.key for i in store.list()] == ["jobs/1/log.txt"]
    assert store.describe() == f"s3://{bucket}"


def test_s3_unreachable_endpoint_fails_fast_naming_the_endpoint() -> None:
    port = free_port()  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    store = S3Store(
        bucket="rw-nowhere",
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x"),
        lambda: store.exists("k"),
        lambda: list(store.list()),
    ):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert time.monotonic() - started < 10
        assert endpoint in caught.value.message
        assert caught.value.status_code == 503
        assert SECRET_KEY not in caught.value.message


def test_s3_read_timeout_is_unavailable(tmp_path: Path) -> None:
    """A server that accepts connections but never answers: the read timeout applies."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        store = S3Store(
            bucket="rw-silent",
            endpoint_url=endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            read_timeout=0.3,
            max_attempts=2,
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="cannot be reached") as caught:
            store.get("k")
        assert time.monotonic() - started < 10
        assert endpoint in caught.value.message


def test_s3_missing_bucket_says_which_and_how_to_create_it(s3_server: S3Server) -> None:
    bucket = f"rw-missing-{uuid.uuid4().hex[:10]}"
    store = make_s3_store(s3_server, bucket, prefix="p")
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x"),
        lambda: store.exists("k"),  # HEAD: a bare 404, told apart from a missing key
        lambda: store.size("k"),
        lambda: store.delete("k"),
        lambda: list(store.list()),
    ):
        with pytest.raises(StoreError) as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound | StoreUnavailable)
        assert f"bucket '{bucket}' does not exist" in caught.value.message
        assert f"aws s3 mb s3://{bucket}" in caught.value.message
        assert s3_server.endpoint_url in caught.value.message
    # Once it exists, the same store works.
    raw_client(s3_server).create_bucket(Bucket=bucket)
    assert not store.exists("k")
    store.put("k", b"x")
    assert store.get("k") == b"x"


def test_s3_secret_key_never_shows(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = make_s3_store(s3_server, s3_bucket, prefix=f"t-{uuid.uuid4().hex[:8]}")
    texts = [repr(store), str(store), store.describe()]
    texts += [repr(value) for value in vars(store).values() if isinstance(value, str)]
    failing_stores = [
        store,
        make_s3_store(s3_server, f"rw-missing-{uuid.uuid4().hex[:8]}"),
        S3Store(
            bucket="b-unreachable",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        ),
    ]
    for failing in failing_stores:
        for call in (
            partial(failing.get, "missing"),
            partial(failing.download, "missing", tmp_path / "x"),
            partial(failing.put_file, "k", tmp_path / "does-not-exist"),
        ):
            with pytest.raises(StoreError) as caught:
                call()
            error: BaseException | None = caught.value
            while error is not None:  # the whole chain
                texts += [str(error), repr(error)]
                error = error.__cause__ or error.__context__
    joined = "\n".join(texts)
    assert SECRET_KEY not in joined


# -- open_store --------------------------------------------------------------------------
def settings_for(tmp_path: Path, storage_url: str, **extra: str) -> Settings:
    return Settings(home=tmp_path / "home", storage_url=storage_url, **extra)  # type: ignore[arg-type]


def test_open_store_defaults_to_the_artifacts_folder_of_the_home(tmp_path: Path) -> None:
    store = open_store(Settings(home=tmp_path / "home", storage_url=""))
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "home" / "artifacts").resolve()


def test_open_store_parses_file_urls_and_absolute_paths(tmp_path: Path) -> None:
    folder = tmp_path / "with space" / "artifacts"
    by_url = open_store(settings_for(tmp_path, folder.as_uri()))  # percent-encoded
    by_path = open_store(settings_for(tmp_path, str(folder)))
    by_localhost = open_store(settings_for(tmp_path, f"file://localhost{folder}"))
    for store in (by_url, by_path, by_localhost):
        assert isinstance(store, LocalStore)
        assert store.root == folder.resolve()
    by_url.put("k", b"v")
    assert (folder / "k").read_bytes() == b"v"


def test_open_store_parses_s3_urls(tmp_path: Path) -> None:
    store = open_store(
        settings_for(
            tmp_path,
            "s3://my-bucket/runwright/prod/",
            s3_endpoint_url="http://minio:9000",
            s3_region="eu-west-3",
            s3_access_key_id="AKIDEXAMPLE",
            s3_secret_access_key=SECRET_KEY,
        )
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("my-bucket", "runwright/prod")
    assert (store.endpoint_url, store.region) == ("http://minio:9000", "eu-west-3")
    assert store.describe() == "s3://my-bucket/runwright/prod"
    assert SECRET_KEY not in repr(store)

    bare = open_store(settings_for(tmp_path, "s3://bucket-only"))  # credential chain
    assert isinstance(bare, S3Store)
    assert (bare.bucket, bare.prefix, bare.endpoint_url) == ("bucket-only", "", "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://files.example.com/artifacts", "scheme 'ftp'"),
        ("ftp://user:hunter2@files.example.com/a", "scheme 'ftp'"),
        ("http://example.com/artifacts", "scheme 'http'"),
        ("relative/folder", "absolute"),
        ("file://otherhost/srv/a", "host"),
        ("s3://", "bucket is missing"),
        ("s3:///prefix-without-bucket", "bucket is missing"),
    ],
)
def test_open_store_refuses_other_urls_listing_the_supported_forms(
    tmp_path: Path, url: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(settings_for(tmp_path, url))
    message = caught.value.message
    assert expected in message
    assert "file:///" in message
    assert "s3://bucket" in message
    assert "hunter2" not in message


def test_open_store_refuses_credentials_in_the_url_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUNWRIGHT_S3_ACCESS_KEY_ID") as caught:
        open_store(settings_for(tmp_path, f"s3://AKID:{SECRET_KEY}@bucket/p"))
    assert SECRET_KEY not in caught.value.message


def test_open_store_wants_both_s3_keys_or_neither(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUNWRIGHT_S3_SECRET_ACCESS_KEY"):
        open_store(settings_for(tmp_path, "s3://bucket", s3_access_key_id="AKID"))
    with pytest.raises(ConfigError, match="RUNWRIGHT_S3_ACCESS_KEY_ID") as caught:
        open_store(settings_for(tmp_path, "s3://bucket", s3_secret_access_key=SECRET_KEY))
    assert SECRET_KEY not in caught.value.message


def test_open_store_works_end_to_end_against_the_s3_server(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = open_store(
        settings_for(
            tmp_path,
            f"s3://{s3_bucket}/e2e-{uuid.uuid4().hex[:8]}",
            s3_endpoint_url=s3_server.endpoint_url,
            s3_access_key_id=ACCESS_KEY,
            s3_secret_access_key=SECRET_KEY,
        )
    )
    store.put(log_key(3, 9), b"log")
    assert [i.key for i in store.list(execution_prefix(3, 9))] == ["jobs/3/executions/9/log.txt"]


# -- key layout --------------------------------------------------------------------------
def test_key_layout() -> None:
    sha = hashlib.sha256(b"pkg").hexdigest()
    assert package_key(7, sha) == f"jobs/7/packages/{sha}.zip"
    assert context_key(7, 42) == "jobs/7/executions/42/context.json"
    assert output_key(7, 42, "result.csv") == "jobs/7/executions/42/output/result.csv"
    assert output_key(7, 42, "charts/a.png") == "jobs/7/executions/42/output/charts/a.png"
    assert log_key("7", "42") == "jobs/7/executions/42/log.txt"
    assert job_prefix(7) == "jobs/7/"
    assert execution_prefix(7, 42) == "jobs/7/executions/42/"


@pytest.mark.parametrize(
    "call",
    [
        lambda: package_key(7, "ABC"),
        lambda: package_key(7, "0" * 63),
        lambda: package_key("a/b", "0" * 64),
        lambda: context_key("..", 1),
        lambda: log_key(1, ""),
        lambda: output_key(1, 2, "../../../etc/passwd"),
        lambda: output_key(1, 2, "/abs"),
        lambda: output_key(1, 2, ""),
        lambda: output_key(1, 2, "a\\b"),
    ],
)
def test_key_layout_refuses_bad_parts(call: Any) -> None:
    with pytest.raises(StoreError):
        call()
