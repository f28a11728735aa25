"""Who may use the web app: HTTP Basic as user `technician` with the password from
`password_file`, or `Authorization: Bearer <token>` with the token from `token_file`. Without
either configured, the server listens on loopback only (whoever can reach it is on the gateway
already) and asks for nothing."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.config import WebConfig
from positioning.errors import InputError

log = logging.getLogger(__name__)

USER = "technician"
LOOPBACK = "127.0.0.1"


def parse_listen(text: str, where: str = "web.listen") -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(text, where, 'expected "HOST:PORT", e.g. "0.0.0.0:8080"')
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Credentials:
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_config(cls, web: WebConfig) -> Credentials:
        return cls(_read(web.password_file), _read(web.token_file))

    @property
    def required(self) -> bool:
        return self.password is not None or self.token is not None

    def accepts(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value carries valid credentials."""
        if not self.required:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.token is not None:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme == "basic" and self.password is not None:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            ok_user = hmac.compare_digest(user.encode(), USER.encode())
            return ok_user & hmac.compare_digest(password.encode(), self.password.encode())
        return False


def bind_host(host: str, creds: Credentials) -> str:
    """The address to listen on: loopback only unless credentials are configured."""
    if creds.required or is_loopback(host):
        return host
    log.warning(
        "web: no password_file or token_file configured: listening on %s only, not %s",
        LOOPBACK,
        host,
    )
    return LOOPBACK


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise InputError(
            path, "", f"cannot read the web app's credentials ({e.strerror})"
        ) from None
    if not value:
        raise InputError(path, "", "the credentials file is empty")
    return value
