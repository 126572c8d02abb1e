"""Sensitive fields sealed at rest with an application key (docs/security.md).

A sealed value is a JSON object, so it fits a jsonb column as it is and a text column as its
JSON text, and it says what it is:

    {"$sealed": 1, "kid": "k1", "f": "arguments", "n": "<nonce>", "c": "<ciphertext>"}

AES-GCM (cryptography's AESGCM) with a random 12-byte nonce. The associated data binds the
value to its place: the id of the row that holds it (a task id, a memory id) and the field
label `f`, so a ciphertext copied into another row does not open. `kid` names the key that
sealed it; ENCRYPTION_KEYS lists the current key first and others after it, which only open:
older ones (`taskfleet rotate-key` re-seals their values under the current one), or a new one
on its way in (docs/security.md, "Rotating a key": open first, then seal).

A value that does not open is Unsealable. Its subclass UnknownKey says the value names a key
this process does not hold, which is not the value's fault: in a rolling restart another
process may seal with a key this one does not have yet. Handlers retry those (`unknown_key`)
and fail the rest.

The blind index of a memory fact (its dedupe key) is an HMAC-SHA256 under a key derived from
an encryption key with HKDF, prefixed by that key's kid, so equal facts of a user collide
without the fact being readable from the key.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings

MARK = "$sealed"
KEY_BYTES = 32
NONCE_BYTES = 12
KID_PATTERN = r"^[A-Za-z0-9_\-]{1,32}$"
# Used only when ENCRYPTION_KEYS is unset and TASKFLEET_ENV is not production, so that a fresh
# checkout runs (`make run`). It is public: data sealed with it is not protected.
DEV_KID = "dev"
DEV_KEYS = f"{DEV_KID}:" + base64.urlsafe_b64encode(b"taskfleet-development-key-0000!!").decode()

Row = UUID | str


class Unsealable(ValueError):
    """A sealed value that does not open: an unknown kid, another place, or tampered with."""


class UnknownKey(Unsealable):
    """Sealed under a key id ENCRYPTION_KEYS does not hold here: most likely a newer key that
    another process already seals with (a rolling restart), or an old key removed too early.
    Another process, or this one restarted with the key, opens it: worth a retry."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"sealed with key {kid!r}, which ENCRYPTION_KEYS does not hold")
        self.kid = kid


def is_sealed(value: Any) -> bool:
    """Whether `value` is a sealed value (as a JSON object, not as text)."""
    return (
        isinstance(value, dict)
        and value.get(MARK) == 1
        and all(isinstance(value.get(k), str) for k in ("kid", "f", "n", "c"))
    )


def new_key(kid: str) -> str:
    """A fresh `kid:key` entry for ENCRYPTION_KEYS (`taskfleet keygen`)."""
    if not re.fullmatch(KID_PATTERN, kid):
        raise ConfigError(f"key id {kid!r}: use 1-32 letters, digits, '_' or '-'")
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """`kid:key,kid:key` -> [(kid, 32 bytes)], current first. Errors never quote a key."""
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), start=1):
        kid, sep, encoded = entry.partition(":")
        if not sep or not re.fullmatch(KID_PATTERN, kid):
            raise ConfigError(f"ENCRYPTION_KEYS: entry {n} is not kid:key (kid: letters, digits)")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"ENCRYPTION_KEYS: key {kid!r} is not urlsafe base64 of {KEY_BYTES} bytes"
                " (taskfleet keygen prints one)"
            )
        if any(kid == k for k, _ in keys):
            raise ConfigError(f"ENCRYPTION_KEYS: key id {kid!r} appears twice")
        keys.append((kid, key))
    if not keys:
        raise ConfigError("ENCRYPTION_KEYS: no key (taskfleet keygen prints one)")
    return keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(row: Row, field: str, kid: str) -> bytes:
    return f"taskfleet/1|{row}|{field}|{kid}".encode()


def _index_key(key: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"taskfleet blind index 1")
    return hkdf.derive(key)


@dataclass(frozen=True)
class Keyring:
    """The keys of ENCRYPTION_KEYS: `kid` seals, every key opens. Build with from_settings."""

    kid: str
    ciphers: dict[str, AESGCM]
    index_keys: dict[str, bytes]
    development: bool = False

    @classmethod
    def from_text(cls, text: str, *, development: bool = False) -> "Keyring":
        """A keyring from ENCRYPTION_KEYS text, the first key sealing; ConfigError if malformed."""
        keys = parse_keys(text)
        return cls(
            kid=keys[0][0],
            ciphers={kid: AESGCM(key) for kid, key in keys},
            index_keys={kid: _index_key(key) for kid, key in keys},
            development=development,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "Keyring":
        """The process's keyring (cached: every caller with the same settings shares it).

        Raises ConfigError, one line, for a bad ENCRYPTION_KEYS or none in production.
        """
        text = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
        return _keyring(text, settings.environment)

    @property
    def kids(self) -> list[str]:
        """The ids of every key held, the sealing one first: each one's blind index is searched."""
        return list(self.ciphers)

    # -- one value ---------------------------------------------------------------------------

    def seal(self, value: Any, *, row: Row, field: str) -> dict[str, Any]:
        """`value` (anything JSON) sealed under the current key, bound to (row, field)."""
        nonce = os.urandom(NONCE_BYTES)
        plain = orjson.dumps(value)
        sealed = self.ciphers[self.kid].encrypt(nonce, plain, _aad(row, field, self.kid))
        return {MARK: 1, "kid": self.kid, "f": field, "n": _b64(nonce), "c": _b64(sealed)}

    def open(self, sealed: Any, *, row: Row, field: str | None = None) -> Any:
        """The value of a sealed object found in `row` (and, if given, in `field`)."""
        if not is_sealed(sealed):
            raise Unsealable("not a sealed value")
        kid, label = sealed["kid"], sealed["f"]
        if field is not None and label != field:
            raise Unsealable(f"a sealed {label!r} found where {field!r} belongs")
        cipher = self.ciphers.get(kid)
        if cipher is None:
            raise UnknownKey(kid)
        try:
            plain = cipher.decrypt(_unb64(sealed["n"]), _unb64(sealed["c"]), _aad(row, label, kid))
        except (InvalidTag, binascii.Error, ValueError):
            raise Unsealable(f"sealed {label!r} of {row} does not open: moved or altered") from None
        return orjson.loads(plain)

    # -- whole documents (a task's input, output, checkpoint...) ----------------------------

    def reveal(self, value: Any, *, row: Row) -> Any:
        """`value` with every sealed object in it opened (what the owner is shown)."""
        return _walk(value, lambda s: self.open(s, row=row))

    def reseal(self, value: Any, *, row: Row) -> tuple[Any, int]:
        """`value` with every object sealed under an older key sealed again under the
        current one, and how many there were (key rotation)."""
        count = 0

        def again(sealed: dict[str, Any]) -> Any:
            nonlocal count
            if sealed["kid"] == self.kid:
                return sealed
            count += 1
            return self.seal(self.open(sealed, row=row), row=row, field=sealed["f"])

        return _walk(value, again), count

    # -- text columns ------------------------------------------------------------------------

    def seal_text(self, value: Any, *, row: Row, field: str) -> str:
        """`value` sealed as JSON text, for a text column (open_text reads it back)."""
        return orjson.dumps(self.seal(value, row=row, field=field)).decode()

    def open_text(self, text: str, *, row: Row, field: str | None = None) -> Any:
        """A text column's value: opened if it holds a sealed value, else as it is (a value
        written before sealing was deployed)."""
        sealed = sealed_text(text)
        return text if sealed is None else self.open(sealed, row=row, field=field)

    # -- blind index -------------------------------------------------------------------------

    def blind_index(self, text: str, *, scope: str, kid: str | None = None) -> str:
        """`kid:hmac` of `text` within `scope` (a user: equal facts of two users differ)."""
        kid = kid or self.kid
        mac = hmac.new(self.index_keys[kid], f"{scope}\x00{text}".encode(), hashlib.sha256)
        return f"{kid}:{mac.hexdigest()}"

    def blind_indexes(self, text: str, *, scope: str) -> list[str]:
        """The index under every key: a value indexed before a rotation is still found."""
        return [self.blind_index(text, scope=scope, kid=kid) for kid in self.kids]


def sealed_text(text: Any) -> dict[str, Any] | None:
    """The sealed object a text column holds, or None for plain text."""
    if not isinstance(text, str) or not text.startswith('{"$sealed"'):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if is_sealed(value) else None


def _walk(value: Any, on_sealed: Callable[[dict[str, Any]], Any]) -> Any:
    if isinstance(value, dict):
        if is_sealed(value):
            return on_sealed(value)
        return {k: _walk(v, on_sealed) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, on_sealed) for v in value]
    return value


@functools.lru_cache(maxsize=8)
def _keyring(text: str | None, environment: str) -> Keyring:
    if text:
        return Keyring.from_text(text)
    if environment == "production":
        raise ConfigError(
            "ENCRYPTION_KEYS: required when TASKFLEET_ENV=production (taskfleet keygen prints one)"
        )
    return Keyring.from_text(DEV_KEYS, development=True)
