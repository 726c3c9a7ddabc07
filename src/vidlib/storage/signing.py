"""A fast SigV4 query-string presigner for S3 (byte-identical to botocore's URLs).

botocore's ``generate_presigned_url`` re-derives the signing key (four HMACs), walks
its event system and re-parses the URL for every call: ~173 µs per URL. A list page
carries 20 URLs, so here the signing key is derived once per (credentials, UTC date)
and each URL costs one SHA-256 of the canonical request plus one HMAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger("vidlib.storage.signing")

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# SigV4 presigned URLs are valid for at most seven days.
MAX_EXPIRES = 7 * 24 * 3600
# RFC 3986 unreserved characters: what AWS leaves unencoded in query values.
_QUERY_SAFE = "-_.~"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class FrozenCredentials:
    """One immutable set of AWS credentials."""

    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode("utf-8"), "sha256")


def derive_signing_key(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for one day, region and service."""
    k_date = _hmac(f"AWS4{secret_key}".encode(), datestamp)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def host_header(url: str) -> str:
    """The Host value SigV4 signs for ``url`` (lowercase, default port omitted)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def quote_key(key: str) -> str:
    """An object key as it appears in an S3 URL path (``/`` and ``~`` kept)."""
    return quote(key, safe="/~")


class _DayScope:
    """Everything that is constant for one set of credentials on one UTC day."""

    __slots__ = ("credential_param", "credentials", "datestamp", "scope", "signing_key", "token")

    def __init__(
        self, credentials: FrozenCredentials, datestamp: str, region: str, service: str
    ) -> None:
        self.credentials = credentials
        self.datestamp = datestamp
        self.scope = f"{datestamp}/{region}/{service}/aws4_request"
        self.signing_key = derive_signing_key(credentials.secret_key, datestamp, region, service)
        self.credential_param = quote(f"{credentials.access_key}/{self.scope}", safe=_QUERY_SAFE)
        self.token = (
            None if credentials.token is None else quote(credentials.token, safe=_QUERY_SAFE)
        )


class SigV4Presigner:
    """Presigns S3 requests for one bucket URL; the signing key is cached per day."""

    def __init__(
        self,
        base_url: str,
        region: str,
        credentials: FrozenCredentials,
        *,
        service: str = "s3",
    ) -> None:
        """``base_url`` is the bucket's URL up to and including the slash before the key."""
        if not base_url.endswith("/"):
            raise ValueError("base_url must end with '/'")
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.region = region
        self.service = service
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self._host = host_header(base_url)
        self._credentials = credentials
        self._day: _DayScope | None = None
        # (epoch second, X-Amz-Date, date stamp), swapped as one reference.
        self._clock: tuple[int, str, str] = (-1, "", "")

    @property
    def credentials(self) -> FrozenCredentials:
        """The credentials URLs are currently signed with."""
        return self._credentials

    def set_credentials(self, credentials: FrozenCredentials) -> None:
        """Sign with new credentials from now on (the cached key is dropped)."""
        self._credentials = credentials

    def _timestamps(self, now: float | None) -> tuple[str, str]:
        second = int(time.time() if now is None else now)
        clock = self._clock
        if clock[0] != second:
            # strftime is a measurable part of the per-URL cost: once per second suffices.
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            clock = (second, amz_date, amz_date[:8])
            self._clock = clock
        return clock[1], clock[2]

    def _day_scope(self, datestamp: str) -> _DayScope:
        day = self._day
        credentials = self._credentials
        if day is None or day.datestamp != datestamp or day.credentials is not credentials:
            day = _DayScope(credentials, datestamp, self.region, self.service)
            self._day = day
        return day

    def url_for(self, key: str) -> str:
        """The unsigned URL of ``key``."""
        return f"{self._origin}{self._base_path}{quote_key(key)}"

    def presign(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> str:
        """A presigned URL; ``headers`` become signed headers the client must send."""
        if not 1 <= expires_in <= MAX_EXPIRES:
            raise ValueError(f"expires_in must be between 1 and {MAX_EXPIRES} seconds")
        amz_date, datestamp = self._timestamps(now)
        day = self._day_scope(datestamp)
        path = self._base_path + quote_key(key)

        if headers:
            # Trimall of each value, as SigV4 (and botocore) canonicalise them.
            canon = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
            canon["host"] = self._host
            names = sorted(canon)
            signed_headers = ";".join(names)
            canonical_headers = "".join(f"{n}:{canon[n]}\n" for n in names)
        else:
            signed_headers = "host"
            canonical_headers = f"host:{self._host}\n"

        pairs = [(quote(k, safe=_QUERY_SAFE), quote(v, safe=_QUERY_SAFE)) for k, v in params]
        # botocore's order: operation parameters first, then the auth parameters.
        pairs.append(("X-Amz-Algorithm", ALGORITHM))
        pairs.append(("X-Amz-Credential", day.credential_param))
        pairs.append(("X-Amz-Date", amz_date))
        pairs.append(("X-Amz-Expires", str(expires_in)))
        pairs.append(("X-Amz-SignedHeaders", quote(signed_headers, safe=_QUERY_SAFE)))
        if day.token is not None:
            pairs.append(("X-Amz-Security-Token", day.token))
        query = "&".join([f"{k}={v}" for k, v in pairs])
        canonical_query = "&".join([f"{k}={v}" for k, v in sorted(pairs)])

        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n"
            f"{signed_headers}\n{UNSIGNED_PAYLOAD}"
        )
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{day.scope}\n"
            f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
        )
        signature = hmac.digest(day.signing_key, string_to_sign.encode("utf-8"), "sha256").hex()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"


def base_url_from_presigned(url: str, probe_key: str) -> str:
    """The bucket base URL inside a botocore presigned URL made for ``probe_key``."""
    path_url = url.split("?", 1)[0]
    suffix = quote_key(probe_key)
    if not path_url.endswith("/" + suffix):
        raise ValueError("the presigned URL does not end with the probe key")
    return path_url[: -len(suffix)]


async def snapshot_credentials(source: Any) -> FrozenCredentials:
    """Freeze aiobotocore credentials (refreshing them first when they are temporary)."""
    frozen = await source.get_frozen_credentials()
    return FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)


def is_refreshable(source: Any) -> bool:
    """True for temporary credentials that expire and are refreshed (STS, IMDS, SSO...)."""
    from botocore.credentials import RefreshableCredentials

    return isinstance(source, RefreshableCredentials)


class CredentialsRefresher:
    """Keeps a presigner's credential snapshot current for temporary credentials.

    Presigning is synchronous and must never wait on the network, so a background task
    asks botocore for the credentials every ``interval`` seconds; botocore refreshes
    them once inside its advisory window (15 minutes before expiry), well ahead of
    the snapshot going stale.
    """

    def __init__(self, source: Any, presigner: SigV4Presigner, *, interval: float = 60.0) -> None:
        """Watch ``source`` (aiobotocore credentials) on behalf of ``presigner``."""
        self._source = source
        self._presigner = presigner
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (only temporary credentials need one)."""
        if self._task is None and is_refreshable(self._source):
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="vidlib-credentials-refresh"
            )

    async def refresh_once(self) -> None:
        """Take a new snapshot now if the credentials changed."""
        fresh = await snapshot_credentials(self._source)
        if fresh != self._presigner.credentials:
            self._presigner.set_credentials(fresh)
            log.info("storage credentials refreshed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh_once()
            except Exception:
                # Keep signing with the old snapshot; the next tick retries.
                log.warning("refreshing storage credentials failed", exc_info=True)

    async def stop(self) -> None:
        """Stop the background task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
