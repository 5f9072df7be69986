"""Encryption at rest: every event body and snapshot sealed before it reaches the store.

With ``BATON_ENCRYPTION_KEY`` set (``baton keygen`` makes one), the bytes of each record
are encrypted with the eventsourcing library's AES cipher (AES-256-GCM, a fresh nonce per
record) before they are written, and opened again when read. What the store indexes (run
id, seq, type) stays readable; outputs, inputs, reasons and goals do not. The digest
chain runs over the plain bytes, so a run verifies the same sealed or not.

A sealed record starts with a marker and the key's id (a hash of the key, not the key),
so a reader can say which problem it has: no key, another key, or a record that does not
authenticate under the right key (edited or damaged: a BadLogError).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from ..errors import BadLogError, EncryptionKeyError

KEY_ENV = "BATON_ENCRYPTION_KEY"
MARKER = b"\x00baton-aes1:"  # no JSON record starts with a NUL byte
KEY_ID_BYTES = 8
KEY_BYTES = 32
SEALED_AT_LEAST = len(MARKER) + KEY_ID_BYTES + 12 + 16  # marker, key id, nonce, GCM tag


def new_key() -> str:
    """A fresh key, as BATON_ENCRYPTION_KEY takes it (base64 of 32 random bytes)."""
    return AESCipher.create_key(KEY_BYTES)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"baton key id\x00" + key).digest()[:KEY_ID_BYTES]


class Sealer:
    """Seals and opens record bytes with one key, or passes them through without one."""

    def __init__(self, key: str | None):
        self.cipher: AESCipher | None = None
        self.key_id = b""
        if key:
            try:
                raw = base64.b64decode(key.encode(), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != KEY_BYTES:
                raise EncryptionKeyError(
                    f"{KEY_ENV} is not a key baton can use: it must be base64 of "
                    f"{KEY_BYTES} bytes, as `baton keygen` prints")
            self.cipher = AESCipher(Environment(env={AESCipher.CIPHER_KEY: key}))
            self.key_id = _key_id(raw)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Sealer:
        """The sealer for the key in BATON_ENCRYPTION_KEY; none set, one that seals
        nothing. Set but empty is refused: it is what a failed `$(...)` leaves, and
        storing unsealed what was meant to be sealed cannot be undone."""
        key = env.get(KEY_ENV)
        if key is not None and not key.strip():
            raise EncryptionKeyError(
                f"{KEY_ENV} is set but empty (a command substitution that failed?); set it "
                "to the key `baton keygen` printed, or unset it to store without encryption")
        return cls(key)

    @property
    def sealing(self) -> bool:
        return self.cipher is not None

    def seal(self, data: bytes) -> bytes:
        if self.cipher is None:
            return data
        return MARKER + self.key_id + self.cipher.encrypt(data)

    def open(self, data: bytes, *, run_id: str, seq: int, what: str = "record") -> bytes:
        """The plain bytes of a stored record: opened with the key; or, with no key set,
        the record itself when it was never sealed. With a key set, a record that is not
        sealed is refused: anyone able to write to the store could have put it there."""
        if not data.startswith(MARKER):
            if self.cipher is not None:
                raise BadLogError(f"{what} is not encrypted, though {KEY_ENV} is set: it was "
                                  "not written by a holder of the key (a store written before "
                                  f"the key was set is read with {KEY_ENV} unset)",
                                  run_id=run_id, seq=seq)
            return data
        where = f"run {run_id!r} {what} at seq {seq}"
        if len(data) < SEALED_AT_LEAST:
            raise BadLogError(f"encrypted {what} is cut short ({len(data)} bytes)",
                              run_id=run_id, seq=seq)
        if self.cipher is None:
            raise EncryptionKeyError(
                f"{where} is encrypted: set {KEY_ENV} to the key it was written with")
        body = data[len(MARKER):]
        if body[:KEY_ID_BYTES] != self.key_id:
            raise EncryptionKeyError(
                f"{where} was encrypted with another key than the {KEY_ENV} set here")
        try:
            return self.cipher.decrypt(body[KEY_ID_BYTES:])
        except (InvalidTag, ValueError):
            raise BadLogError(f"encrypted {what} does not authenticate under its key: it was "
                              "edited or damaged", run_id=run_id, seq=seq) from None

    def seal_text(self, text: str) -> str:
        """`text` sealed and printable (for the runs index's columns)."""
        if self.cipher is None:
            return text
        return "sealed:" + base64.b64encode(self.seal(text.encode())).decode()

    def open_text(self, text: str, *, run_id: str) -> str:
        if not text.startswith("sealed:"):
            return text
        try:
            data = base64.b64decode(text[len("sealed:"):], validate=True)
        except (binascii.Error, ValueError):
            return text
        if not data.startswith(MARKER):
            return text  # a goal that merely starts with "sealed:"
        return self.open(data, run_id=run_id, seq=1, what="listing").decode(
            errors="replace")
