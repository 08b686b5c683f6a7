"""The worker side of a launch: what runs in each process that torch elastic starts.

It imports only `protocol` of this package: every worker of every job imports it before the
user's main runs, and needs none of the launcher's modules.
"""

import os
from collections.abc import Mapping

from py_distributed.protocol import RUN_ID_ENV


def is_distributed_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a worker that a py_distributed launcher started, False in the launcher itself."""
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID") == run_id
