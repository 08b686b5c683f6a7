"""Implementation of py_distributed_binary, and what py_distributed_test shares with it: a settings
rule that writes the main, then the py rule."""

load(":distributed_main.bzl", "distributed_main")
load(":kubernetes.bzl", "kubernetes_manifests")
load(":slurm.bzl", "py_distributed_slurm")

def _as_string(value):
    """An int written in BUILD as the string attribute takes it; "" for None; a select() as is."""
    if value == None:
        return ""
    return str(value) if type(value) == "int" else value

def py_distributed_binary(
        name,
        srcs = [],
        main = None,
        deps = [],
        nproc_per_node = 1,
        nnodes = None,
        max_restarts = 0,
        rdzv_backend = "c10d",
        rdzv_endpoint = "",
        rdzv_conf = {},
        torchrun_args = [],
        worker_entry = "stub",
        start_method = "",
        k8s_image = "",
        k8s_binary_path = "",
        k8s_nodes = 0,
        k8s_resources = {},
        py_binary_rule = None,
        **kwargs):
    """A py_binary that runs its main on N torchrun workers, each re-entering this binary.

    Run it (`bazel run`, or `bazel-bin/...` directly) and it starts torchrun in its own process;
    torchrun starts the workers, and each worker runs `main` as `__main__` with the binary's
    arguments, exactly as `torchrun main.py ARGS` would. Every torchrun setting below takes
    `select()`, and is checked at build time by the runtime's own checker; torchrun's environment
    variable for it (`PET_NPROC_PER_NODE=4`) overrides it at run time.

    It also makes `<name>.slurm`, which submits the binary to SLURM:
    `bazel run //pkg:name.slurm -- --nodes=2 -- ARGS` (docs/clusters.md).

    Args:
      name: the binary's name (`bazel run //pkg:name`).
      srcs: Python sources, as for py_binary; must contain `main`.
      main: the unmodified torchrun-style script the workers run. Default: the only file of `srcs`,
        else `<name>.py`.
      deps: py_library dependencies of `main`, torch among them; `//runtime` is added.
      nproc_per_node: workers per node: an int in 1..1024, or "gpu", "cpu", "xpu", "auto" as for
        torchrun. Default 1. In a `select()`, write the values as strings ("4").
        Run time: PET_NPROC_PER_NODE.
      nnodes: number of nodes, `N` or `"MIN:MAX"` for elastic jobs. Default None: as many as the
        cluster description at run time names (TF_CONFIG, SLURM, Kubernetes), else 1.
        Run time: PET_NNODES.
      max_restarts: how often torchrun restarts the worker group after a failure. Default 0.
        Run time: PET_MAX_RESTARTS.
      rdzv_backend: torch elastic rendezvous backend: "c10d" (default), "static", "etcd", "etcd-v2".
        Run time: PET_RDZV_BACKEND.
      rdzv_endpoint: "HOST[:PORT]" of the rendezvous. Default "": on several nodes the chief's, from
        the cluster description; on one node a free loopback port, as `torchrun --standalone` does.
        Run time: PET_RDZV_ENDPOINT.
      rdzv_conf: dict of extra rendezvous settings, e.g. `{"join_timeout": "600"}`. Default {}.
        Run time: PET_RDZV_CONF ("k=v,k2=v2").
      torchrun_args: further torchrun flags, e.g. `["--log-dir=/tmp/logs", "--tee=3"]`; the settings
        above have their own arguments and may not be repeated here. Default [].
      worker_entry: how workers start. "stub" (default): through this binary's own Bazel stub, so each
        worker has the launcher's imports, data and interpreter. "pythonpath": as the bare interpreter
        with PYTHONPATH set from the launcher's sys.path (the seed's set_python_path_in_subprocess),
        for builds whose stub cannot start twice.
      start_method: how torch elastic starts each worker, as torchrun's --start-method: "spawn" (the
        default), a new process as `worker_entry` says; "fork", forked from the launcher, which
        has imported torch; "forkserver", forked from a server that has imported torch and the
        modules `main` imports at its top level. Either warm start falls back to spawn, with a
        notice, where it cannot apply (docs/using.md, Start methods). Default: spawn.
        Run time: PET_START_METHOD.
      k8s_image: the container image of the `<name>.k8s` target, whose build writes a JobSet and a
        PyTorchJob running this binary (docs/clusters.md), e.g. "ghcr.io/me/model:v1". Build flag
        `--@rules_py_distributed//rules:k8s_image=IMAGE` wins over it. Default: the flag's.
      k8s_binary_path: the binary's path inside that image, the pods' command; rules_py's
        py_image_layer with root = "/app" puts it there.
        Default: `/app/<package>/<name>`.
      k8s_nodes: pods of the `.k8s` manifests, one node each. Default: nnodes's N or MAX, else 1.
      k8s_resources: each pod's resource requests, Kubernetes names and quantities, e.g.
        `{"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8"}`; all but cpu are its limits too.
        Default {}.
      py_binary_rule: the rule that builds the binary. Default: Bazel's built-in py_binary. Under
        bzlmod, load the macro from `//rules:rules_python.bzl`, which passes rules_python's.
      **kwargs: passed unchanged to `py_binary_rule`: data, args, env, imports, python_version,
        visibility, tags, testonly, and any other py_binary attribute.
    """

    rule = py_binary_rule or getattr(native, "py_binary", None)
    generated_main = distributed_py(
        macro = "py_distributed_binary",
        name = name,
        rule = rule,
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
        **kwargs
    )

    # Tagged manual: it builds only with an image, and `bazel build //...` names none.
    kubernetes_manifests(
        name = name + ".k8s",
        binary = name,
        image = k8s_image,
        binary_path = k8s_binary_path,
        nodes = k8s_nodes,
        resources = {k: str(v) for k, v in k8s_resources.items()} if type(k8s_resources) == "dict" else k8s_resources,
        nproc_per_node = _as_string(nproc_per_node),
        nnodes = _as_string(nnodes),
        max_restarts = max_restarts,
        tags = ["manual"],
        testonly = kwargs.get("testonly", False),
        visibility = kwargs.get("visibility"),
    )

    py_distributed_slurm(
        name = name + ".slurm",
        binary = name,
        binary_main = generated_main,
        py_binary_rule = rule,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", False),
        visibility = kwargs.get("visibility"),
    )

def distributed_py(
        macro,
        name,
        rule,
        srcs,
        main,
        deps,
        nproc_per_node,
        nnodes,
        max_restarts,
        rdzv_backend,
        rdzv_endpoint,
        rdzv_conf,
        torchrun_args,
        worker_entry,
        start_method = "",
        test = False,
        **kwargs):
    """What py_distributed_binary and py_distributed_test share: the settings rule, then `rule`.

    Args:
      macro: the public macro's name, for messages.
      name: the target's name.
      rule: the py rule to call (py_binary or py_test), or None where this Bazel has no built-in one.
      srcs: as the public macro's.
      main: as the public macro's.
      deps: as the public macro's.
      nproc_per_node: as the public macro's.
      nnodes: as the public macro's.
      max_restarts: as the public macro's.
      rdzv_backend: as the public macro's.
      rdzv_endpoint: as the public macro's.
      rdzv_conf: as the public macro's.
      torchrun_args: as the public macro's.
      worker_entry: as the public macro's.
      start_method: as py_distributed_binary's.
      test: whether `rule` is a py_test, whose launcher then speaks Bazel's test protocol.
      **kwargs: passed unchanged to `rule`.

    Returns:
      The generated main's file name, whose arguments hold the settings (the `.slurm` target reads
      them).
    """

    # Decided here and only here, inside the macro: Bazel 9 has no native py rules, and reading one
    # when this file loads would break there (hedron PR #235).
    if not rule:
        fail("%s(name = %r): this Bazel has no built-in py rules; load " % (macro, name) +
             "%s from @rules_py_distributed//rules:rules_python.bzl instead" % macro)

    listed = type(srcs) == "list"
    if not main:
        main = srcs[0] if listed and len(srcs) == 1 else name + ".py"

    # Only where both are plain file names of this package can "not in srcs" be told at loading time.
    plain = listed and all([type(f) == "string" and ":" not in f and "/" not in f for f in [main] + srcs])
    if plain and main not in srcs:
        fail("%s(name = %r): main = %r is not in srcs; add it to srcs" % (macro, name, main))
    generated_main = "_%s_py_distributed_main.py" % name
    distributed_main(
        name = "_%s_py_distributed_main" % name,
        binary = name,
        main = main,
        out = generated_main,
        nproc_per_node = _as_string(nproc_per_node),
        nnodes = _as_string(nnodes),
        max_restarts = max_restarts,
        rdzv_backend = rdzv_backend,
        rdzv_endpoint = rdzv_endpoint,
        rdzv_conf = {k: str(v) for k, v in rdzv_conf.items()} if type(rdzv_conf) == "dict" else rdzv_conf,
        torchrun_args = torchrun_args,
        worker_entry = worker_entry,
        start_method = start_method,
        test = test,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", test),
        visibility = ["//visibility:private"],
    )
    rule(
        name = name,
        srcs = srcs + [generated_main],
        main = generated_main,
        deps = deps + [Label("//runtime")],
        **kwargs
    )
    return generated_main
