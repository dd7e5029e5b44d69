"""Artifacts in an S3 bucket (AWS S3 or an S3-compatible server such as MinIO or Ceph).

Large objects are streamed in both directions: uploads go through boto3's managed
transfers (multipart above 8 MB), downloads into a temporary file that is renamed into
place at the end. botocore errors are translated here into runwright's store errors.
The secret key is handed to boto3 and kept nowhere else: not in attributes, ``repr``
or messages.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast

import boto3  # type: ignore[import-untyped]
import boto3.exceptions  # type: ignore[import-untyped]
import s3transfer.exceptions  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from runwright.artifacts.base import (
    COPY_CHUNK,
    ArtifactStore,
    ObjectInfo,
    validate_key,
    validate_prefix,
)
from runwright.artifacts.local import open_input, write_atomically
from runwright.config import mask_url_password
from runwright.errors import ObjectNotFound, StoreError, StoreUnavailable

MB = 1024 * 1024
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)
_UNAVAILABLE = (BotoConnectionError, HTTPClientError, IncompleteReadError)


class S3Store(ArtifactStore):
    """Objects live in ``bucket`` under ``prefix/`` (no prefix when it is empty).

    Empty ``access_key_id`` and ``secret_access_key`` let boto3 find credentials itself
    (environment, ``~/.aws``, instance role); an empty ``endpoint_url`` means AWS.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"Invalid S3 bucket name {bucket!r}.")
        if bool(access_key_id) != bool(secret_access_key):
            raise StoreError(
                "Give both the S3 access key id and the secret access key, or neither "
                "(to use boto3's default credential chain)."
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self._bucket_seen = False
        options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            # Few attempts: an unreachable server fails in seconds, not minutes.
            "retries": {"mode": "standard", "total_max_attempts": max_attempts},
        }
        if endpoint_url:
            # S3-compatible servers expect path-style addresses (http://host/bucket/key)
            # and do not all understand the newer default checksum trailers.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        config = Config(**options)
        try:
            session = boto3.session.Session()
            self._client: Any = session.client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=region or None,
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:  # a bad endpoint URL or AWS profile
            reason = str(exc).replace(endpoint_url, self._endpoint()) if endpoint_url else exc
            raise StoreError(
                f"Could not set up the S3 client for {self.describe()} at "
                f"{self._endpoint()}: {reason}"
            ) from exc
        self._transfer = TransferConfig(
            multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=4
        )

    def __repr__(self) -> str:
        return (
            f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint={self._endpoint()!r})"
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _endpoint(self) -> str:
        if self.endpoint_url:
            return mask_url_password(self.endpoint_url)
        return f"AWS S3 ({self.region})" if self.region else "AWS S3"

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- errors -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, action: str, key: str) -> Iterator[None]:
        """botocore and s3transfer errors -> runwright store errors naming ``key``."""
        try:
            yield
        except boto3.exceptions.S3UploadFailedError as exc:
            # upload_file wraps a ClientError in a message-only error.
            cause = exc.__context__
            if isinstance(cause, ClientError):
                self._raise_client_error(action, key, cause, exc)
            raise StoreError(f"Could not {action} {self._where(key)}: {exc}") from exc
        except s3transfer.exceptions.RetriesExceededError as exc:
            raise StoreUnavailable(
                f"Could not {action} {self._where(key)}: the transfer from "
                f"{self._endpoint()} kept failing ({exc.last_exception})."
            ) from exc
        except ClientError as exc:
            self._raise_client_error(action, key, exc, exc)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"Could not {action} {self._where(key)}: the S3 endpoint {self._endpoint()} "
                f"cannot be reached ({type(exc).__name__}). Check that the server is running "
                "and RUNWRIGHT_S3_ENDPOINT_URL is right."
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StoreError(
                f"Could not {action} {self._where(key)}: no usable S3 credentials. Set "
                "RUNWRIGHT_S3_ACCESS_KEY_ID and RUNWRIGHT_S3_SECRET_ACCESS_KEY, or configure "
                "boto3's credential chain (AWS_* variables, ~/.aws, instance role)."
            ) from exc
        except BotoCoreError as exc:
            raise StoreError(f"Could not {action} {self._where(key)}: {exc}") from exc
        except OSError as exc:  # reading the local file of an upload
            raise StoreError(
                f"Could not {action} {self._where(key)}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else "")
                + "."
            ) from exc

    def _where(self, key: str) -> str:
        return f"artifact {key!r} in {self.describe()}"

    def _raise_client_error(
        self, action: str, key: str, error: Any, raised: BaseException
    ) -> NoReturn:
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = details.get("Message") or code or str(error)
        if code == "NoSuchBucket":
            raise self._missing_bucket() from raised
        if code in _MISSING_KEY_CODES:
            # A HEAD answers a bare 404 for a missing bucket too: tell them apart.
            if code != "NoSuchKey" and not self._bucket_exists():
                raise self._missing_bucket() from raised
            raise ObjectNotFound(f"Artifact {key!r} not found in {self.describe()}.") from raised
        if code in _DENIED_CODES:
            raise StoreError(
                f"Could not {action} {self._where(key)}: access denied ({code}). Check the "
                "S3 credentials (RUNWRIGHT_S3_ACCESS_KEY_ID, RUNWRIGHT_S3_SECRET_ACCESS_KEY) "
                f"and their permissions on bucket {self.bucket!r}."
            ) from raised
        if code in _BUSY_CODES or (isinstance(status, int) and status >= 500):
            raise StoreUnavailable(
                f"Could not {action} {self._where(key)}: {self._endpoint()} answered "
                f"{code or status} ({message})."
            ) from raised
        raise StoreError(
            f"Could not {action} {self._where(key)}: S3 error {code} ({message})."
        ) from raised

    def _missing_bucket(self) -> StoreError:
        self._bucket_seen = False
        endpoint = f" --endpoint-url {mask_url_password(self.endpoint_url)}"
        hint = endpoint if self.endpoint_url else ""
        return StoreError(
            f"The S3 bucket {self.bucket!r} does not exist at {self._endpoint()}. Create it "
            f"(for example `aws s3 mb s3://{self.bucket}{hint}`, or in the console of your "
            "S3 provider) or fix the bucket in RUNWRIGHT_STORAGE_URL."
        )

    def _bucket_exists(self) -> bool:
        if self._bucket_seen:
            return True
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except BotoCoreError:
            return True  # cannot tell: keep the key's own answer
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            # Anything but "not found" (e.g. 403) means it exists: the key's answer stands.
            return code not in {"404", "NoSuchBucket", "NotFound"}
        self._bucket_seen = True
        return True

    # -- writing ------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def put_file(self, key: str, path: Path) -> None:
        full = self._full_key(key)
        # Opened here so that an unreadable file is reported as such; upload_file then
        # reads the parts itself, each from its own offset, in parallel.
        with open_input(path, key):
            pass
        with self._translate("upload", key):
            self._client.upload_file(str(path), self.bucket, full, Config=self._transfer)

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        full = self._full_key(key)
        with self._translate("upload", key):
            self._client.upload_fileobj(stream, self.bucket, full, Config=self._transfer)

    # -- reading ------------------------------------------------------------------------

    def _get_body(self, key: str, action: str) -> Any:
        full = self._full_key(key)
        with self._translate(action, key):
            return self._client.get_object(Bucket=self.bucket, Key=full)["Body"]

    def get(self, key: str) -> bytes:
        body = self._get_body(key, "read")
        with self._translate("read", key), contextlib.closing(body):
            return cast(bytes, body.read())

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        body = self._get_body(key, "read")
        raw = _BodyReader(body, lambda: self._translate("read", key))
        with io.BufferedReader(raw, COPY_CHUNK) as reader:
            yield cast(BinaryIO, reader)

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._open(key)

    def download(self, key: str, path: Path) -> None:
        full = self._full_key(key)
        destination = Path(path)

        def fill(handle: BinaryIO) -> None:
            with self._translate("download", key):
                self._client.download_fileobj(self.bucket, full, handle, Config=self._transfer)

        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(destination, fill)
        except OSError as exc:
            raise StoreError(
                f"Could not download artifact {key!r} to {destination}: {exc.strerror or exc}."
            ) from exc

    def _head(self, key: str) -> Any:
        full = self._full_key(key)
        with self._translate("inspect", key):
            return self._client.head_object(Bucket=self.bucket, Key=full)

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        with self._translate("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Keys that are not valid store keys (folder markers like ``a/``) are skipped."""
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translate("list", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(base) :]
                    try:
                        validate_key(key)
                    except StoreError:
                        continue
                    yield ObjectInfo(
                        key=key, size=int(item["Size"]), modified=item["LastModified"].timestamp()
                    )


class _BodyReader(io.RawIOBase):
    """A botocore response body as a raw binary file, its errors translated."""

    def __init__(
        self, body: Any, translate: Callable[[], contextlib.AbstractContextManager[None]]
    ) -> None:
        super().__init__()
        self._body = body
        self._translate = translate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._translate():
            data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
