"""torch's c10d rendezvous state, signed with the job's secret and checked before torch unpickles
it (docs/security.md).

torch elastic keeps the rendezvous state in the chief's store as a pickle, which every agent
`pickle.loads` each time it reads it (dynamic_rendezvous._BackendRendezvousStateHolder.sync), and
the store takes writes from anyone who reaches it: whoever can write that key runs code on every
node. This backend wraps torch's own: what it writes is the pickle behind an HMAC-SHA256 of it,
and what it reads goes to torch only once the HMAC holds, as Horovod's runner checks each message
before it unpickles it. Without a secret it writes torch's plain pickle.

- A state that fails the check is never unpickled. A node that holds a good state keeps it, says
  so once, and its next write replaces the forged one: the job goes on. A node that has none yet
  cannot take part, and stops with one line.
- Next to the state, under the job's public run id, the first node writes a marker that its
  secret signs. A node started without the secret reads it under that id and is told, at once,
  instead of waiting alone for its join timeout; a node with another secret finds that its
  marker differs. Neither has written anything the job reads.
"""

import hmac
import sys

from torch.distributed import Store  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous import RendezvousStateError
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import RendezvousBackend, Token

from py_distributed.settings.job_secret import FILE_ENV, JobSecret

# What a signed value starts with; a pickle never does (its first byte is PROTO, 0x80).
MAGIC = b"py_distributed/hmac-sha256\n"
_DIGEST_BYTES = 32


class Refused(RendezvousStateError):
    """This node cannot take part in the rendezvous it found: its message says why and the fix."""


class Backend(RendezvousBackend):
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
        job: str = "py_distributed",
    ) -> None:
        self._inner = C10dRendezvousBackend(store, run_id)
        self._name, self._job = name, job
        self._key = secret.key("rendezvous state") if secret else None
        self._good: bytes | None = None  # the last state whose signature held
        self._warned = False
        if secret:
            self._mark(store, public_id, secret)

    @property
    def name(self) -> str:
        return self._name

    def get_state(self) -> tuple[bytes, Token] | None:
        got = self._inner.get_state()
        return None if got is None else (self._opened(got[0]), got[1])

    def set_state(
        self, state: bytes, token: Token | None = None
    ) -> tuple[bytes, Token, bool] | None:
        if self._key:
            state = self._signed(state)
        result = self._inner.set_state(state, token)
        if result is None:
            return None
        bits, new_token, has_set = result
        return self._opened(bits), new_token, has_set

    def _signed(self, payload: bytes) -> bytes:
        assert self._key
        return MAGIC + hmac.digest(self._key, payload, "sha256") + payload

    def _opened(self, bits: bytes) -> bytes:
        """The pickle within `bits`, once it may be unpickled."""
        if not self._key:
            if bits.startswith(MAGIC):
                raise Refused(
                    f"the job's rendezvous is signed with a secret this node does not have: give"
                    f" it the job's ({FILE_ENV})"
                )
            return bits
        payload = self._verified(bits)
        if payload is not None:
            self._good = payload
            return payload
        if self._good is None:
            raise Refused(
                "the rendezvous state in the store is not signed with this node's secret: another"
                f" job's, or forged; give every node the same secret ({FILE_ENV})"
            )
        if not self._warned:
            self._warned = True
            print(
                f"{self._job}: refused a rendezvous state not signed with the job's secret, never"
                " unpickled: someone who reaches the chief's store wrote it (docs/security.md);"
                " this node keeps the last signed one",
                file=sys.stderr,
                flush=True,
            )
        return self._good

    def _verified(self, bits: bytes) -> bytes | None:
        """The payload of `bits` if this job's key signed it, else None."""
        assert self._key
        signed = bits[len(MAGIC) :]
        digest, payload = signed[:_DIGEST_BYTES], signed[_DIGEST_BYTES:]
        expected = hmac.digest(self._key, payload, "sha256")
        return payload if bits.startswith(MAGIC) and hmac.compare_digest(digest, expected) else None

    def _mark(self, store: Store, public_id: str, secret: JobSecret) -> None:
        """Writes the marker under `public_id`, or finds the one there (the module says why). It is
        no signed state, whose key is another: copied into the state's key, it fails the check."""
        marker = MAGIC + secret.key(f"marker {public_id}")
        found = C10dRendezvousBackend(store, public_id).set_state(marker)
        if found is None or found[2] or found[0] == marker:
            return
        if found[0].startswith(MAGIC):
            raise Refused(
                "this node's secret is not the one the job's other nodes have: give every node the"
                f" same ({FILE_ENV})"
            )
        raise Refused(
            f"the job's rendezvous was started by a node without its secret: give every node the"
            f" same ({FILE_ENV})"
        )
