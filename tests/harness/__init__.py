"""What every test folder shares; no test module imports another. tests/conftest.py puts tests/ (and
runtime/) on sys.path, so tests import `harness.<module>`:

  bazel    this checkout's ROOT and BIN, `run` and `bazel` with cleanup, `wait_for`, scratch
           workspaces, the strace log reader
  procfs   what /proc says: processes by an environment variable, their listening sockets
  netns    simulated hosts: network namespaces on one bridge (tests/multinode, tests/cluster)
  launch   the probe launcher: starts tests/e2e's probe binaries, reads their reports and the
           launcher's root cause and stacks, finds a run's processes (tests/conftest.py's run_id)
  probe    the probes' own library, inside the Bazel binaries (//tests/harness:probe): the atomic
           report writer and the one fault grammar, PROBE_FAILURES

The fixtures are in tests/conftest.py (built, probe_dir, run_id, run_ids) and
tests/e2e/conftest.py (strace). This file is imported inside the probe binaries too: it imports
nothing.
"""
