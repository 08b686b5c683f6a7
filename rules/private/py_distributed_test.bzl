"""Implementation of py_distributed_test: a py_test whose main runs on N torchrun workers."""

load(":py_distributed_binary.bzl", "distributed_py")

def py_distributed_test(
        name,
        srcs = [],
        main = None,
        deps = [],
        nproc_per_node = 2,
        nnodes = None,
        max_restarts = 0,
        rdzv_backend = "c10d",
        rdzv_endpoint = "",
        rdzv_conf = {},
        torchrun_args = [],
        worker_entry = "stub",
        start_method = "",
        py_test_rule = None,
        **kwargs):
    """A py_test that runs its main on N torchrun workers and passes only if every rank passes.

    `bazel test` runs the launcher, which starts the ranks as py_distributed_binary does (gloo on
    CPU, the rendezvous on a free loopback port, so tests run side by side and in a sandbox with
    the network blocked). A failing rank's error is in the test log with its rank and the root
    cause first. The launcher speaks Bazel's test protocol: each rank's output in
    TEST_UNDECLARED_OUTPUTS_DIR (`rank<R>.stdout.log`, `rank<R>.stderr.log`), a JUnit file in
    XML_OUTPUT_FILE with one testcase per rank, temporary files only under TEST_TMPDIR, and on
    Bazel's timeout (SIGTERM) every rank's stacks in the log, labelled with the rank, and nothing
    left running. The main is any torchrun-style script: `unittest.main()` and `pytest.main()`
    work inside the ranks.

    Args:
      name: the test's name (`bazel test //pkg:name`).
      srcs: as py_distributed_binary's.
      main: as py_distributed_binary's.
      deps: as py_distributed_binary's.
      nproc_per_node: as py_distributed_binary's, but default 2: a test of distributed code wants
        more than one rank.
      nnodes: as py_distributed_binary's.
      max_restarts: as py_distributed_binary's.
      rdzv_backend: as py_distributed_binary's.
      rdzv_endpoint: as py_distributed_binary's.
      rdzv_conf: as py_distributed_binary's.
      torchrun_args: as py_distributed_binary's.
      worker_entry: as py_distributed_binary's.
      start_method: as py_distributed_binary's.
      py_test_rule: the rule that builds the test. Default: Bazel's built-in py_test.
      **kwargs: passed unchanged to `py_test_rule`: size, timeout, flaky, shard_count, env, args,
        data, tags, exec_properties, and any other py_test attribute.
    """
    distributed_py(
        macro = "py_distributed_test",
        name = name,
        rule = py_test_rule or getattr(native, "py_test", None),
        srcs = srcs,
        main = main,
        deps = deps,
        nproc_per_node = nproc_per_node,
        nnodes = nnodes,
        max_restarts = max_restarts,
        rdzv_backend = rdzv_backend,
        rdzv_endpoint = rdzv_endpoint,
        rdzv_conf = rdzv_conf,
        torchrun_args = torchrun_args,
        worker_entry = worker_entry,
        start_method = start_method,
        test = True,
        **kwargs
    )
