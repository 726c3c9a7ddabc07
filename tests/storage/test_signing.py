"""The fast presigner produces exactly botocore's URLs, and keeps credentials fresh."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any
from unittest import mock

import botocore.session
import httpx
import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from botocore.config import Config

from tests.fixtures.seaweed import S3Server
from vidlib.storage import signing
from vidlib.storage.s3 import S3Store
from vidlib.storage.signing import (
    CredentialsRefresher,
    FrozenCredentials,
    SigV4Presigner,
    base_url_from_presigned,
    host_header,
)

FROZEN = dt.datetime(2025, 3, 9, 23, 59, 58)  # naive UTC, as botocore uses it
EPOCH = FROZEN.replace(tzinfo=dt.UTC).timestamp()
BUCKET = "vidlib-media"
REGION = "eu-central-1"
KEYS = [
    "users/42/videos/7/original.mp4",
    "with space/and+plus=equals&amp.mov",
    "ünïcødé/日本語 ファイル.mkv",
    "deep/a/b/c/d/e/f.webm",
    "tilde~and%percent?query#hash.mp4",
    "single",
]
ENDPOINTS = [
    # (endpoint_url, addressing_style)
    ("http://127.0.0.1:8333", "path"),
    ("https://minio.example.com:9000", "path"),
    ("https://s3.eu-central-1.amazonaws.com", "virtual"),
    (None, "virtual"),
    (None, "path"),
    (None, "auto"),
]


def botocore_client(endpoint: str | None, style: str, token: str | None) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),  # type: ignore[arg-type]
    )


@pytest.fixture
def frozen_botocore() -> Iterator[None]:
    with mock.patch("botocore.auth.get_current_datetime", return_value=FROZEN):
        yield


@pytest.mark.usefixtures("frozen_botocore")
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////+token/with=chars"])
@pytest.mark.parametrize(("endpoint", "style"), ENDPOINTS)
def test_urls_are_byte_identical_to_botocore(
    endpoint: str | None, style: str, token: str | None
) -> None:
    client = botocore_client(endpoint, style, token)
    probe = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"})
    signer = SigV4Presigner(
        base_url_from_presigned(probe, "k"),
        REGION,
        FrozenCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
    )
    for key in KEYS:
        for expires in (60, 3600, 604800):
            expected = client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=expires
            )
            assert signer.presign("GET", key, expires_in=expires, now=EPOCH) == expected

        expected = client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": BUCKET,
                "Key": key,
                "ContentType": "video/mp4",
                "ContentLength": 123_456_789,
                "IfNoneMatch": "*",
            },
            ExpiresIn=900,
        )
        headers = {
            "Content-Type": "video/mp4",
            "Content-Length": "123456789",
            "If-None-Match": "*",
        }
        got = signer.presign("PUT", key, expires_in=900, headers=headers, now=EPOCH)
        assert got == expected

        for upload_id, part in (("2~abc/def+ghi==", 1), ("plain_upload.id", 10000)):
            expected = client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": BUCKET, "Key": key, "UploadId": upload_id, "PartNumber": part},
                ExpiresIn=900,
            )
            got = signer.presign(
                "PUT",
                key,
                expires_in=900,
                params=[("uploadId", upload_id), ("partNumber", str(part))],
                now=EPOCH,
            )
            assert got == expected


def test_signing_key_is_cached_per_day() -> None:
    signer = SigV4Presigner("https://b.s3.amazonaws.com/", "us-east-1", FrozenCredentials("a", "b"))
    with mock.patch.object(
        signing, "derive_signing_key", wraps=signing.derive_signing_key
    ) as derive:
        for i in range(50):
            signer.presign("GET", f"k{i}", expires_in=60, now=EPOCH + i % 2)
        assert derive.call_count == 1
        signer.presign("GET", "k", expires_in=60, now=EPOCH + 2)  # past midnight UTC
        assert derive.call_count == 2
        signer.set_credentials(FrozenCredentials("a2", "b2"))
        signer.presign("GET", "k", expires_in=60, now=EPOCH + 2)
        assert derive.call_count == 3


def test_rejects_out_of_range_expiry() -> None:
    signer = SigV4Presigner("https://b.s3.amazonaws.com/", "us-east-1", FrozenCredentials("a", "b"))
    with pytest.raises(ValueError, match="expires_in"):
        signer.presign("GET", "k", expires_in=0)
    with pytest.raises(ValueError, match="expires_in"):
        signer.presign("GET", "k", expires_in=604801)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:80/b/", "127.0.0.1"),
        ("https://S3.Example.COM:443/", "s3.example.com"),
        ("https://s3.example.com:8443/", "s3.example.com:8443"),
        ("http://[::1]:9000/b/", "[::1]:9000"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    assert host_header(url) == host


async def test_refresher_swaps_in_new_temporary_credentials() -> None:
    calls = 0

    async def refresh() -> dict[str, str]:
        nonlocal calls
        calls += 1
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        return {
            "access_key": f"AK{calls}",
            "secret_key": f"SK{calls}",
            "token": f"TOKEN{calls}",
            "expiry_time": expiry.isoformat(),
        }

    # Expiring in 5 minutes: inside botocore's refresh window.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    source = AioRefreshableCredentials.create_from_metadata(
        {"access_key": "AK0", "secret_key": "SK0", "token": "T0", "expiry_time": soon.isoformat()},
        refresh_using=refresh,
        method="test",
    )
    signer = SigV4Presigner(
        "https://b.s3.amazonaws.com/", "us-east-1", FrozenCredentials("AK0", "SK0", "T0")
    )
    refresher = CredentialsRefresher(source, signer, interval=0.01)
    refresher.start()
    try:
        for _ in range(200):
            if signer.credentials.access_key != "AK0":
                break
            await asyncio.sleep(0.01)
    finally:
        await refresher.stop()
    assert signer.credentials == FrozenCredentials("AK1", "SK1", "TOKEN1")
    assert "X-Amz-Security-Token=TOKEN1" in signer.presign("GET", "k", expires_in=60)
    assert calls == 1  # fresh for an hour now: no refresh on every tick


async def test_static_credentials_need_no_refresher() -> None:
    from aiobotocore.credentials import AioCredentials

    signer = SigV4Presigner("https://b.s3.amazonaws.com/", "us-east-1", FrozenCredentials("a", "b"))
    refresher = CredentialsRefresher(AioCredentials("a", "b"), signer)
    refresher.start()
    assert refresher._task is None
    await refresher.stop()


async def test_credentials_from_the_standard_chain(
    seaweedfs: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    async with S3Store(s3_bucket, endpoint_url=seaweedfs.endpoint_url) as store:
        await store.put_bytes("k.txt", b"hello", content_type="text/plain")
        async with httpx.AsyncClient() as http:
            resp = await http.get(store.presign_get("k.txt", expires_in=60))
        assert resp.content == b"hello"
        assert store.presigner.credentials.access_key == seaweedfs.access_key
