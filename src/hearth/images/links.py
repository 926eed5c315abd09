"""Signed, expiring links to generated pictures.

A ``url`` answer names the picture by a random token (its blob key) and
carries its expiry time and an HMAC-SHA256 of both under a server secret:
nobody can guess a link, stretch its life or point it at another picture,
and any process sharing the secret (and the blob store) can serve it. The
secret is ``HEARTH_IMAGE_URL_SECRET`` or, when unset, random bytes kept in
``<data_dir>/image-url-secret`` (created once, readable by the owner only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from hearth.errors import NotFound, PermissionDenied

SECRET_FILE = "image-url-secret"
# Where links point: the router serves this path (under /v1).
CONTENT_PATH = "/v1/images/content/"


def load_secret(data_dir: Path, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    return secret


def new_name(output_format: str) -> str:
    """An unguessable file name for a new picture (192 random bits)."""
    return f"{secrets.token_urlsafe(24)}.{output_format}"


class ImageLinks:
    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def _signature(self, name: str, expires: int) -> str:
        return hmac.new(self._secret, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, name: str, *, now: float | None = None) -> tuple[str, int]:
        """The link's path and query for picture ``name``, and when it expires."""
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        query = urlencode({"expires": expires, "signature": self._signature(name, expires)})
        return f"{CONTENT_PATH}{name}?{query}", expires

    def check(self, name: str, expires: str | None, signature: str | None, *,
              now: float | None = None) -> None:
        """Refuse a link that was not signed here (403) or has expired (404)."""
        try:
            when = int(expires or "")
        except ValueError:
            when = -1
        if when < 0 or not signature or not hmac.compare_digest(
                self._signature(name, when), signature):
            raise PermissionDenied("This image link is not valid: its signature does not match.",
                                   code="invalid_image_url")
        if (now if now is not None else time.time()) >= when:
            raise NotFound("This image link has expired; image URLs are valid for "
                           f"{self.ttl_seconds // 60} minutes after the image was generated.",
                           code="image_url_expired")
