"""Implementation of py_distributed_test: a py_test whose main runs on N torchrun workers."""

load(":py_distributed_binary.bzl", "distributed_py")

def py_distributed_test(name, srcs = [], main = None, deps = [], py_test_rule = None, **kwargs):
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
      py_test_rule: the rule that builds the test. Default: Bazel's built-in py_test.
      **kwargs: the torchrun settings, as py_distributed_binary's (rules/private/attributes.bzl)
        but nproc_per_node's default, 2: a test of distributed code wants more than one rank. A
        test with `gpus = N` (an int) is also tagged `resources:gpu:N` where Bazel counts GPUs
        (6.2 and later; docs/gpus.md). Every
        other argument is passed unchanged to `py_test_rule`: size, timeout, flaky, shard_count,
        env, args, data, tags, exec_properties, and any other py_test attribute.
    """
    distributed_py(
        macro = "py_distributed_test",
        name = name,
        rule = py_test_rule,
        srcs = srcs,
        main = main,
        deps = deps,
        test = True,
        settings_defaults = {"nproc_per_node": 2},
        **kwargs
    )
