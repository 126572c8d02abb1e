"""One-time sign-in codes: a link signs a browser in once without a token in any URL.

Whoever holds the JWT secret (`taskfleet up`, `taskfleet console-link`) mints a token, makes a
random code and stores the token sealed under a key derived from the code, found by another
hash of the code. The link carries the code in its fragment (`/console/#code=...`), which
browsers never send to a server; the console posts it to the API, which deletes the row and
opens the token with it. So the database holds neither the code nor a usable token, and a
row can be redeemed once (docs/security.md, "Console sign-in links").
"""

import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CODE_BYTES = 32  # 256 random bits: guessing one is out of the question, no rate limit needed
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class SealedCode:
    """What the database keeps of a code: where to find it and the token sealed under it."""

    lookup: str
    sealed: bytes


def _derive(code: str, purpose: bytes) -> bytes:
    # The code is uniformly random, so HKDF without salt gives independent keys per purpose.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(code.encode())


def lookup_of(code: str) -> str:
    """The row's key: a hash of the code that says nothing of the sealing key."""
    return _derive(code, b"taskfleet signin lookup").hex()


def new_code(token: str) -> tuple[str, SealedCode]:
    """A fresh code for the link, and what to store of it: the token sealed under the code."""
    code = secrets.token_urlsafe(CODE_BYTES)
    lookup = lookup_of(code)
    nonce = secrets.token_bytes(NONCE_BYTES)
    key = AESGCM(_derive(code, b"taskfleet signin key"))
    sealed = nonce + key.encrypt(nonce, token.encode(), lookup.encode())
    return code, SealedCode(lookup, sealed)


def open_token(code: str, sealed: bytes) -> str | None:
    """The token sealed under `code`; None if it does not open (not this code's row)."""
    key = AESGCM(_derive(code, b"taskfleet signin key"))
    try:
        plain = key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], lookup_of(code).encode())
    except InvalidTag:
        return None
    return plain.decode()
