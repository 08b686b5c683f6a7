"""A module that tests/e2e/warm_probe.py imports at its top level, which makes a temporary directory
when it is imported: forkserver workers share the one their server made, as they share all that
the server's imports made, and the directory must outlive each worker's exit (the server's
finalizer removes it when the server stops)."""

import tempfile

SCRATCH = tempfile.TemporaryDirectory(prefix="warm_probe_scratch-")
