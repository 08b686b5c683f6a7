"""Implementation of py_distributed_binary: check the torchrun values, write the main, call py_binary."""

load(":distributed_main.bzl", "distributed_main")

# torchrun's own choices (torch/distributed/run.py: determine_local_world_size).
_NPROC_WORDS = ["auto", "cpu", "gpu", "xpu"]

# The rendezvous handlers torch elastic registers (torch/distributed/elastic/rendezvous/registry.py).
_RDZV_BACKENDS = ["c10d", "etcd", "etcd-v2", "static"]

_WORKER_ENTRIES = ["pythonpath", "stub"]

# The grammar of the runtime's checks of PET_* values (runtime/py_distributed/config.py), so that
# a value that would fail there fails here, at loading time.
_NPROC_MAX = 1024

def _is_number(value):
    """True for a non-negative int, or a string of ASCII decimal digits."""
    if type(value) == "int":
        return value >= 0
    return type(value) == "string" and value != "" and all([c in "0123456789" for c in value.elems()])

def _is_count(value, most = None):
    return _is_number(value) and int(value) > 0 and (most == None or int(value) <= most)

def _is_nnodes(value):
    bounds = str(value).split(":")
    if len(bounds) > 2 or not all([_is_count(b) for b in bounds]):
        return False
    return int(bounds[0]) <= int(bounds[-1])

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

def _only(value, chars):
    return all([c in chars for c in value.elems()])

def _is_endpoint(value):
    """"" or HOST or HOST:PORT, HOST being a name, an IPv4 address or a bracketed IPv6 address."""
    if value == "":
        return True
    if value.startswith("["):
        end = value.find("]")
        if end < 2:
            return False
        host, rest = value[:end + 1], value[end + 1:]
    else:
        colon = value.find(":")
        host, rest = (value, "") if colon < 0 else (value[:colon], value[colon:])
    name_chars = "0123456789abcdefABCDEF:." if host.startswith("[") else _NAME_CHARS + ".-_"
    if host == "" or not _only(host.strip("[]"), name_chars):
        return False
    if rest == "":
        return True
    port = rest[1:]
    return rest[0] == ":" and _is_number(port) and len(port) <= 5 and int(port) <= 65535

def _is_rdzv_conf(value):
    """Keys as Python names, values non-empty and without ",": torchrun's "k=v,k2=v2"."""
    return type(value) == "dict" and all([
        type(k) == "string" and k != "" and not k[0].isdigit() and _only(k, _NAME_CHARS + "_") and
        str(v) != "" and "," not in str(v)
        for k, v in value.items()
    ])

def _check_attributes(name, values):
    """Fails at loading time on the first bad torchrun value, naming the target and the fix."""
    checks = [
        ("nproc_per_node", _is_count(values.nproc_per_node, _NPROC_MAX) or values.nproc_per_node in _NPROC_WORDS, "an int in 1..%d or one of %s" % (_NPROC_MAX, ", ".join(_NPROC_WORDS))),
        ("nnodes", values.nnodes == None or _is_nnodes(values.nnodes), 'None, a positive int or "MIN:MAX" with 0 < MIN <= MAX'),
        ("max_restarts", type(values.max_restarts) == "int" and values.max_restarts >= 0, "an int >= 0"),
        ("rdzv_backend", values.rdzv_backend in _RDZV_BACKENDS, "one of " + ", ".join(_RDZV_BACKENDS)),
        ("rdzv_endpoint", _is_endpoint(values.rdzv_endpoint), '"" or "HOST[:PORT]" with PORT in 0..65535'),
        ("rdzv_conf", _is_rdzv_conf(values.rdzv_conf), 'a dict like {"join_timeout": "600"}, no "," or "=" inside'),
        ("worker_entry", values.worker_entry in _WORKER_ENTRIES, "one of " + ", ".join(_WORKER_ENTRIES)),
    ]
    for attr, ok, expected in checks:
        if not ok:
            fail("py_distributed_binary(name = %r): %s = %r; use %s" % (name, attr, getattr(values, attr), expected))

    # Which endpoint a multi-node job uses may be known only at run time, from the cluster
    # description (TF_CONFIG, SLURM, Kubernetes); the runtime checks it there.

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
        py_binary_rule = None,
        **kwargs):
    """A py_binary that runs its main on N torchrun workers, each re-entering this binary.

    Run it (`bazel run`, or `bazel-bin/...` directly) and it starts torchrun in its own process;
    torchrun starts the workers, and each worker runs `main` as `__main__` with the binary's
    arguments, exactly as `torchrun main.py ARGS` would. Every torchrun value below can be overridden
    at run time by torchrun's own environment variable (`PET_NPROC_PER_NODE=4`, `PET_NNODES=...`):
    run time wins over BUILD.

    Args:
      name: the binary's name (`bazel run //pkg:name`).
      srcs: Python sources, as for py_binary; must contain `main`.
      main: the unmodified torchrun-style script the workers run. Default: the only file of `srcs`,
        else `<name>.py`.
      deps: py_library dependencies of `main`, torch among them; `//runtime` is added.
      nproc_per_node: workers per node: a positive int, or "gpu", "cpu", "xpu", "auto" as for torchrun.
        Default 1. Run time: PET_NPROC_PER_NODE.
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
      rdzv_conf: dict of extra rendezvous settings, e.g. `{"join_timeout": "600"}`.
        Run time: PET_RDZV_CONF ("k=v,k2=v2").
      torchrun_args: further torchrun flags, e.g. `["--log-dir=/tmp/logs", "--tee=3"]`; the values
        above have their own arguments and may not be repeated here.
      worker_entry: how workers start. "stub" (default): through this binary's own Bazel stub, so each
        worker has the launcher's imports, data and interpreter. "pythonpath": as the bare interpreter
        with PYTHONPATH set from the launcher's sys.path (the seed's set_python_path_in_subprocess),
        for builds whose stub cannot start twice, e.g. runfiles without a tree.
      py_binary_rule: the rule that builds the binary; default Bazel's built-in py_binary. Under
        bzlmod, load the macro from `//rules:rules_python.bzl`, which passes rules_python's.
      **kwargs: passed unchanged to `py_binary_rule`: data, args, env, imports, python_version,
        visibility, tags, testonly, and any other py_binary attribute.
    """
    _check_attributes(name, struct(
        nproc_per_node = nproc_per_node,
        nnodes = nnodes,
        max_restarts = max_restarts,
        rdzv_backend = rdzv_backend,
        rdzv_endpoint = rdzv_endpoint,
        rdzv_conf = rdzv_conf,
        worker_entry = worker_entry,
    ))

    # Decided here and only here, inside the macro: Bazel 9 has no native.py_binary, and reading it
    # when this file loads would break there (hedron PR #235).
    binary_rule = py_binary_rule or getattr(native, "py_binary", None)
    if not binary_rule:
        fail("py_distributed_binary(name = %r): this Bazel has no built-in py_binary; load " % name +
             "py_distributed_binary from @rules_py_distributed//rules:rules_python.bzl instead")

    if not main:
        main = srcs[0] if len(srcs) == 1 else name + ".py"
    plain = [f for f in [main] + srcs if type(f) == "string" and ":" not in f and "/" not in f]
    if len(plain) == len(srcs) + 1 and main not in srcs:
        fail("py_distributed_binary(name = %r): main = %r is not in srcs; add it to srcs" % (name, main))
    generated_main = "_%s_py_distributed_main.py" % name
    distributed_main(
        name = "_%s_py_distributed_main" % name,
        binary = name,
        main = main,
        out = generated_main,
        # Only what BUILD says: the rest is left to the cluster description or torchrun.
        build_values = {
            key: value
            for key, value in {
                "max_restarts": str(max_restarts),
                "nnodes": None if nnodes == None else str(nnodes),
                "nproc_per_node": str(nproc_per_node),
                "rdzv_backend": rdzv_backend,
                "rdzv_conf": ",".join(["%s=%s" % (k, v) for k, v in sorted(rdzv_conf.items())]),
                "rdzv_endpoint": rdzv_endpoint or None,
            }.items()
            if value != None
        },
        torchrun_args = torchrun_args,
        worker_entry = worker_entry,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", False),
        visibility = ["//visibility:private"],
    )
    binary_rule(
        name = name,
        srcs = srcs + [generated_main],
        main = generated_main,
        deps = deps + [Label("//runtime")],
        **kwargs
    )
