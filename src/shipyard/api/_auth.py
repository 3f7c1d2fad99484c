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
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from shipyard.errors import AuthenticationError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]+)"
)
_SPACES = re.compile(r"\s+")


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
        try:
            expires = int(query.get("X-Amz-Expires", "0"))
        except ValueError:
            raise AuthenticationError("X-Amz-Expires must be a number of seconds") from None
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


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_query(raw_query: str, presigned: bool) -> str:
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
    try:
        signed_at = dt.datetime.strptime(sig.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthenticationError(f"Malformed or missing X-Amz-Date {sig.amz_date!r}") from None
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
    canonical_uri = raw_path if sig.service == "s3" else quote(raw_path, safe="/~")
    canonical_headers = "".join(
        f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in sig.signed_headers
    )
    if sig.presigned:
        payload_hash = "UNSIGNED-PAYLOAD"
    elif "x-amz-content-sha256" in headers:
        payload_hash = headers["x-amz-content-sha256"]
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
    expected = hmac.new(
        _signing_key(secret, sig.date, sig.region, sig.service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, sig.signature):
        raise AuthenticationError(
            "The request signature does not match: check the secret access key and that no proxy "
            "rewrote the request"
        )
