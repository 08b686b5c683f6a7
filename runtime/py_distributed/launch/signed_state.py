"""torch's c10d rendezvous state, signed with the job's secret and checked before torch unpickles
it (docs/security.md).

torch elastic keeps the rendezvous state in the chief's store as a pickle, which every agent
`pickle.loads` each time it reads it (dynamic_rendezvous._BackendRendezvousStateHolder.sync), and
the store takes writes from anyone who reaches it (and lists its keys to them): whoever can write
that key runs code on every node. This backend is torch's own c10d backend, its key and store,
but what it writes is the pickle behind an HMAC-SHA256 of it and of a version one above the last
it read, and what it reads goes to torch only once the HMAC holds, as Horovod's runner checks each
message before it unpickles it. Without a secret it reads and writes torch's plain pickle.

- A state that fails the check, an older version (a replay) or bytes that are no state at all,
  is never unpickled. A node that holds a good state keeps it, says so once, and its next write
  replaces what is there: the job goes on. A node that has read none yet cannot take part, and
  stops with one line.
- Next to the state, under the job's public run id, the first node writes a marker that its
  secret signs. A node started without the secret reads it under that id and is told, at once,
  instead of waiting alone for its join timeout. A node with the secret never stops for what it
  finds there, which anyone could have written: it says so once, and goes on.
"""

import base64
import binascii
import hmac
import struct
import sys

from torch.distributed import Store  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous import RendezvousStateError
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import Token

from py_distributed.settings.job_secret import FILE_ENV, JobSecret

# What a signed value starts with; a pickle never does (its first byte is PROTO, 0x80).
MAGIC = b"py_distributed/hmac-sha256\n"
_DIGEST_BYTES = 32
_VERSION = struct.Struct(">Q")


class Refused(RendezvousStateError):
    """This node cannot take part in the rendezvous it found: its message says why and the fix."""


class Backend(C10dRendezvousBackend):
    """torch's c10d backend for the store's state under `run_id`, signed with `secret` where
    given, under the name of the backend asked for, which torch elastic checks."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        name: str,
        secret: JobSecret | None = None,
        public_id: str = "",  # the run id the job is known by, where `run_id` is the secret's
        job: str = "py_distributed",  # for messages
    ) -> None:
        super().__init__(store, run_id)
        self._name, self._job = name, job
        self._mac_key = secret.key("rendezvous state") if secret else None
        self._good: tuple[int, bytes] | None = None  # the newest signed state read: version, pickle
        self._said: set[str] = set()
        if secret:
            self._mark(store, public_id, secret)

    @property
    def name(self) -> str:
        return self._name

    def get_state(self) -> tuple[bytes, Token] | None:
        return self._read(self._call_store("get", self._key))

    def set_state(
        self, state: bytes, token: Token | None = None
    ) -> tuple[bytes, Token, bool] | None:
        if self._mac_key:
            state = self._signed((self._good[0] if self._good else 0) + 1, state)
        written = base64.b64encode(state)
        # As torch's: a write over what this node last read (the token), or over no state at all.
        expected = token if isinstance(token, bytes) else self._NULL_SENTINEL.encode()
        found: bytes = self._call_store("compare_set", self._key, expected, written)
        read = self._read(found)
        return None if read is None else (*read, found == written)

    def _read(self, found: bytes) -> tuple[bytes, Token] | None:
        """The pickle in the store's value `found`, once it may be unpickled, and its token."""
        if found == self._NULL_SENTINEL.encode():
            return None
        try:
            bits = base64.b64decode(found, validate=True)
        except binascii.Error as error:
            if not self._mac_key:  # as torch's own
                raise RendezvousStateError("The state object is corrupt.") from error
            bits = b""
        if not self._mac_key:
            if bits.startswith(MAGIC):
                raise Refused(
                    "the job's rendezvous is signed with a secret this node does not have: give"
                    f" it the job's ({FILE_ENV})"
                )
            return bits, found
        opened = self._verified(bits)
        if opened and (self._good is None or opened[0] >= self._good[0]):
            self._good = opened
            return opened[1], found
        if self._good is None:
            raise Refused(
                "the rendezvous state in the store is not signed with this node's secret: another"
                f" job's, or forged; give every node the same secret ({FILE_ENV})"
            )
        self._say(
            "refused a rendezvous state not signed with the job's secret, or older than the one it"
            " has, never unpickled: someone who reaches the chief's store wrote it"
            " (docs/security.md); this node keeps the last signed one"
        )
        return self._good[1], found

    def _signed(self, version: int, payload: bytes) -> bytes:
        assert self._mac_key
        signed = _VERSION.pack(version) + payload
        return MAGIC + hmac.digest(self._mac_key, signed, "sha256") + signed

    def _verified(self, bits: bytes) -> tuple[int, bytes] | None:
        """The version and payload of `bits` if this job's key signed them, else None."""
        assert self._mac_key
        digest = bits[len(MAGIC) : len(MAGIC) + _DIGEST_BYTES]
        signed = bits[len(MAGIC) + _DIGEST_BYTES :]
        if not bits.startswith(MAGIC) or len(signed) < _VERSION.size:
            return None
        if not hmac.compare_digest(digest, hmac.digest(self._mac_key, signed, "sha256")):
            return None
        return _VERSION.unpack_from(signed)[0], signed[_VERSION.size :]

    def _mark(self, store: Store, public_id: str, secret: JobSecret) -> None:
        """Writes the marker under `public_id` where none is (the module says why). It is no
        signed state, whose key is another: copied into the state's key, it fails the check."""
        marker = base64.b64encode(MAGIC + secret.key(f"marker {public_id}"))
        key = f"torch.rendezvous.{public_id}"  # where torch's c10d keeps the state of `public_id`
        none = self._NULL_SENTINEL.encode()
        self._call_store("compare_set", key, "", none)  # as torch's backend makes a key
        found = self._call_store("compare_set", key, none, marker)
        if found != marker:
            self._say(
                f"the rendezvous under the job's run id {public_id!r} is not this job's: a node"
                " with another secret or none, or someone who reaches the chief's store, wrote"
                " it; nodes without this job's secret cannot join"
            )

    def _say(self, line: str) -> None:
        """Prints `line` on stderr, once for this node."""
        if line not in self._said:
            self._said.add(line)
            print(f"{self._job}: {line}", file=sys.stderr, flush=True)
