"""The job's secret, which signs its rendezvous and makes its run id unguessable
(docs/security.md).

torch's c10d has no authentication (its SECURITY.md: for trusted networks only). A secret every
node of one job shares, and nobody else has, lets a node tell the job's own rendezvous state from
one written by anyone else who reaches the chief's store (`launch.signed_state`). It comes from a
file that no user but its owner and group can read, as `.slurm` and `.k8s` provide one, or from
a variable. As Ray's RAY_AUTH_TOKEN_PATH, a secret that is named but cannot be read is an error,
never a job without one.
"""

import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from py_distributed.errors import UsageError

FILE_ENV = "PY_DISTRIBUTED_JOB_SECRET_FILE"
VALUE_ENV = "PY_DISTRIBUTED_JOB_SECRET"
VARIABLES = (FILE_ENV, VALUE_ENV)
# HMAC-SHA256 keys gain nothing past 32 bytes; under 16, a secret could be guessed.
MINIMUM_BYTES = 16


@dataclass(frozen=True)
class JobSecret:
    secret: bytes = field(repr=False)

    def key(self, purpose: str) -> bytes:
        """A key of its own for each use of the secret, none of which reveals it or the others."""
        return hmac.digest(self.secret, purpose.encode(), hashlib.sha256)

    def run_id(self, public: str) -> str:
        """The run id behind the `public` one (SLURM's job id, the port), which the store's keys
        are named after: jobs of other secrets never share one, and it cannot be worked out from
        what is public (though the store lists its keys to whoever reaches it)."""
        return f"{public}-{self.key(f'run id {public}').hex()[:32]}"


def read(environ: Mapping[str, str]) -> JobSecret | None:
    """The secret `environ` names, None if it names none; UsageError, one line, for one that
    cannot be used."""
    path, value = (environ.get(name, "") for name in VARIABLES)
    if path and value:
        raise UsageError(f"{FILE_ENV} and {VALUE_ENV} are both set: keep one")
    if value:
        return _checked(value.encode(), VALUE_ENV)
    if not path:
        return None
    where = f"{FILE_ENV}={path!r}"
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            secret = file.read()
    except OSError as error:
        raise UsageError(
            f"{where}: cannot read it ({error.strerror}); give a readable file"
        ) from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise UsageError(
            f"{where} is open to every user (mode {stat.filemode(mode)}): chmod 600 it"
        )
    return _checked(secret.strip(), where)


def _checked(secret: bytes, where: str) -> JobSecret:
    if len(secret) < MINIMUM_BYTES:
        raise UsageError(
            f"{where}: a secret of {len(secret)} bytes; use {MINIMUM_BYTES} or more random bytes,"
            " e.g. `openssl rand -hex 32`"
        )
    return JobSecret(secret)
