"""A module that tests/e2e/warm_probe.py imports at its top level, which makes two temporary
directories in $PROBE_DIR when it is imported: one removed by a weakref finalizer
(TemporaryDirectory), one by an exit handler. Forkserver workers share the ones their server made,
as they share all that the server's imports made, and these must outlive each worker's exit: the
server removes them when it stops."""

import atexit
import os
import shutil
import tempfile

SCRATCH = tempfile.TemporaryDirectory(prefix="warm_probe_scratch-", dir=os.environ.get("PROBE_DIR"))
AT_EXIT = tempfile.mkdtemp(prefix="warm_probe_at_exit-", dir=os.environ.get("PROBE_DIR"))
atexit.register(shutil.rmtree, AT_EXIT, ignore_errors=True)
