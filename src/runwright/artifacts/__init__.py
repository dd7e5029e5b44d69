"""The artifact store: job packages, run contexts, outputs and logs.

``open_store(settings)`` picks the backend from ``RUNWRIGHT_STORAGE_URL``::

    file:///srv/runwright/artifacts     a local or mounted folder (LocalStore)
    /srv/runwright/artifacts            the same, as a plain absolute path
    s3://bucket/optional/prefix         S3 or an S3-compatible server (S3Store)

The S3 backend (and boto3) is imported only when an ``s3://`` URL is used.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from runwright.artifacts.base import ArtifactStore, ObjectInfo, validate_key, validate_prefix
from runwright.artifacts.local import LocalStore
from runwright.config import Settings, mask_url_password
from runwright.errors import ConfigError, StoreError

SUPPORTED_FORMS = (
    "file:///absolute/path, an absolute path (/srv/artifacts), or s3://bucket/optional/prefix"
)

__all__ = [
    "ArtifactStore",
    "LocalStore",
    "ObjectInfo",
    "open_store",
    "validate_key",
    "validate_prefix",
]


def _unsupported(url: str, reason: str) -> ConfigError:
    return ConfigError(
        f"Unsupported storage URL {mask_url_password(url)!r}: {reason}. "
        f"RUNWRIGHT_STORAGE_URL must be {SUPPORTED_FORMS}."
    )


def _local(url: str) -> LocalStore:
    if "://" not in url:
        path = Path(url).expanduser()
    else:
        parts = urlsplit(url)
        if parts.netloc not in {"", "localhost"}:
            raise _unsupported(url, f"file URLs cannot name a host ({parts.netloc!r})")
        if parts.query or parts.fragment:
            raise _unsupported(url, "file URLs take no '?' or '#' part")
        path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise _unsupported(url, "the folder must be an absolute path")
    return LocalStore(path)


def _s3(url: str, settings: Settings) -> ArtifactStore:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigError(
            "The storage URL must not contain credentials; set RUNWRIGHT_S3_ACCESS_KEY_ID and "
            "RUNWRIGHT_S3_SECRET_ACCESS_KEY instead."
        )
    if not parts.netloc:
        raise _unsupported(url, "the bucket is missing")
    if parts.query or parts.fragment:
        raise _unsupported(url, "s3 URLs take no '?' or '#' part")
    if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
        missing = (
            "RUNWRIGHT_S3_SECRET_ACCESS_KEY"
            if settings.s3_access_key_id
            else "RUNWRIGHT_S3_ACCESS_KEY_ID"
        )
        raise ConfigError(
            f"{missing} is not set: give both S3 keys, or neither to use boto3's default "
            "credential chain (AWS_* variables, ~/.aws, instance role)."
        )
    from runwright.artifacts.s3 import S3Store

    try:
        return S3Store(
            bucket=parts.netloc,
            prefix=unquote(parts.path).strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    except StoreError as exc:
        raise ConfigError(f"Invalid S3 storage settings: {exc.message}") from exc


def open_store(settings: Settings) -> ArtifactStore:
    """The artifact store named by ``settings.effective_storage_url``."""
    url = settings.effective_storage_url.strip()
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in {"", "file"}:
        return _local(url)
    if scheme == "s3":
        return _s3(url, settings)
    raise _unsupported(url, f"the scheme {scheme!r} is not supported")
