"""Reading uploads with a size limit, so a huge body is refused, not buffered."""

from __future__ import annotations

from fastapi import UploadFile

from runwright.errors import TooLarge

CHUNK = 1024 * 1024


async def read_upload(file: UploadFile, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"The {what} is larger than the limit of {limit:,} bytes; make it smaller."
            )
        chunks.append(chunk)
    return b"".join(chunks)
