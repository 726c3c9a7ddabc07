"""Object storage: the ``ObjectStore`` contract, S3 and local implementations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidlib.storage.base import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    InvalidPart,
    MultipartUploadInfo,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    PresignedRequest,
    StorageError,
)

if TYPE_CHECKING:
    from vidlib.config import Settings

__all__ = [
    "DEFAULT_PART_SIZE",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "InvalidPart",
    "MultipartUploadInfo",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "PresignedRequest",
    "StorageError",
    "open_store",
]


async def open_store(settings: Settings) -> ObjectStore:
    """The configured store, ready to use; release it with ``await store.close()``."""
    if settings.storage_backend == "s3":
        from vidlib.storage.s3 import S3Store

        if not settings.s3_bucket:
            raise ValueError("s3_bucket is required for the S3 backend")
        store = S3Store(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
            public_base_url=settings.s3_public_base_url,
        )
        await store.start()
        return store

    from vidlib.storage.local import LocalStore

    return LocalStore(settings.storage_dir, settings.public_url, settings.secret_key.encode())
