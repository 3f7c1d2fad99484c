"""AWS Signature Version 4: reading a request's credential scope, and verifying its signature.

Every AWS client signs its requests; the credential scope (``<key>/<date>/<region>/<service>/
aws4_request``) tells which AWS service the client meant, which is how the server routes S3, STS
and IAM requests that share one port. When the server has credentials configured, the signature
is recomputed here from the request as received and must match.

Streaming uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) are authenticated by their seed
signature over the headers; the per-chunk signatures are not checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from shipyard.errors import AuthenticationError, InvalidPresignedUrl

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600  # seconds: AWS refuses presigned URLs valid for longer
_EXPIRES_RE = re.compile(r"-?[0-9]{1,15}")
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]+)"
)
_SPACES = re.compile(r"\s+")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/~._-]*")  # a path that quote() leaves as it is
_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


@dataclasses.dataclass(frozen=True)
class SigV4:
    """The parts of a SigV4 signature, from the Authorization header or a presigned URL's query."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    amz_date: str
    expires: int | None = None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_sigv4(headers: Mapping[str, str], query: Mapping[str, str]) -> SigV4 | None:
    """Read the signature of a request; None when it carries no SigV4 signature."""
    authorization = headers.get("authorization", "")
    if authorization.startswith(ALGORITHM):
        match = _AUTH_RE.match(authorization)
        if not match:
            raise AuthenticationError(f"Malformed Authorization header: {authorization[:120]!r}")
        credential, signed, signature = match["credential"], match["signed"], match["signature"]
        amz_date = headers.get("x-amz-date", "")
        presigned, expires = False, None
    elif query.get("X-Amz-Algorithm") == ALGORITHM:
        credential = query.get("X-Amz-Credential", "")
        signed = query.get("X-Amz-SignedHeaders", "")
        signature = query.get("X-Amz-Signature", "")
        amz_date = query.get("X-Amz-Date", "")
        presigned = True
        expires = _presigned_expires(query.get("X-Amz-Expires"))
    else:
        return None
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AuthenticationError(
            f"Malformed credential scope {credential!r}: expected <key>/<date>/<region>/<service>/aws4_request"
        )
    return SigV4(
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        tuple(signed.split(";")),
        signature,
        presigned,
        amz_date,
        expires,
    )


def _presigned_expires(raw: str | None) -> int:
    """A presigned URL's X-Amz-Expires, refused as S3 refuses it: missing, not a number, negative,
    or past :data:`MAX_PRESIGNED_EXPIRES` (a SigV4 signing key lives 7 days)."""
    if raw is None:
        raise InvalidPresignedUrl(
            "Query-string authentication version 4 requires the X-Amz-Expires parameter"
        )
    if not _EXPIRES_RE.fullmatch(raw):
        raise InvalidPresignedUrl(f"X-Amz-Expires should be a number, got {raw[:40]!r}")
    expires = int(raw)
    if expires < 0:
        raise InvalidPresignedUrl(f"X-Amz-Expires must be non-negative, got {expires}")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise InvalidPresignedUrl(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires "
            f"must be less than {MAX_PRESIGNED_EXPIRES} seconds (got {expires})"
        )
    return expires


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key a day's signatures for one region and service are made with (kept: a client
    signs with the same one all day, and deriving it is four HMACs)."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def _signed_at(amz_date: str) -> dt.datetime:
    """X-Amz-Date (``20261203T064452Z``) as a UTC time (as strptime reads it, without its cost:
    this is on every signed request)."""
    match = _AMZ_DATE.fullmatch(amz_date)
    try:
        if match is None:
            raise ValueError(amz_date)
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        raise AuthenticationError(f"Malformed or missing X-Amz-Date {amz_date!r}") from None


def _canonical_query(raw_query: str, presigned: bool) -> str:
    if not raw_query:
        return ""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    if presigned:
        pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def verify_sigv4(
    sig: SigV4,
    *,
    secret: str,
    expected_access_key_id: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes | None,
    now: dt.datetime | None = None,
) -> None:
    """Recompute the request's signature with ``secret``; raise AuthenticationError on mismatch.

    ``body`` is needed only when the client signed its hash without sending it in
    ``x-amz-content-sha256`` (every non-S3 service); pass None for S3 requests.
    """
    if not hmac.compare_digest(sig.access_key_id, expected_access_key_id):
        raise AuthenticationError(f"The access key id {sig.access_key_id!r} is not known to this server")
    now = now or dt.datetime.now(dt.UTC)
    signed_at = _signed_at(sig.amz_date)
    if sig.presigned:
        if now > signed_at + dt.timedelta(seconds=sig.expires or 0):
            raise AuthenticationError(
                f"The presigned URL expired at {signed_at + dt.timedelta(seconds=sig.expires or 0)}"
            )
    elif abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise AuthenticationError(
            f"The request was signed at {sig.amz_date}, more than 15 minutes from the server's time "
            f"{now:%Y%m%dT%H%M%SZ}: check the client's clock"
        )
    # botocore encodes the path once more for every service but S3.
    canonical_uri = (
        raw_path if sig.service == "s3" or _PLAIN_PATH.fullmatch(raw_path) else quote(raw_path, safe="/~")
    )
    canonical_headers = "".join(
        f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in sig.signed_headers
    )
    if sig.presigned:
        payload_hash = "UNSIGNED-PAYLOAD"
    elif (declared := headers.get("x-amz-content-sha256")) is not None:
        payload_hash = declared
    else:
        payload_hash = hashlib.sha256(body or b"").hexdigest()
    canonical_request = "\n".join(
        [
            method,
            canonical_uri,
            _canonical_query(raw_query, sig.presigned),
            canonical_headers,
            ";".join(sig.signed_headers),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, sig.amz_date, sig.scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    expected = hmac.digest(
        _signing_key(secret, sig.date, sig.region, sig.service), string_to_sign.encode(), "sha256"
    ).hex()
    if not hmac.compare_digest(expected, sig.signature):
        raise AuthenticationError(
            "The request signature does not match: check the secret access key and that no proxy "
            "rewrote the request"
        )
