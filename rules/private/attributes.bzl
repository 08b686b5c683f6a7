"""The torchrun settings of py_distributed_binary and py_distributed_test, each declared once.

They are attributes of the settings rule (settings.bzl), not macro parameters, so that `select()`
works on every one of them; both macros take them as keyword arguments and sort them out of the
rest with `split_settings`. The docs are the user's: README's attribute table is generated from
them (tools/attribute_table.py), a "Default X" in a doc being the default as BUILD writes it, and
"Run time: VARIABLE." the variable that overrides the setting.
"""

SETTINGS = {
    "nproc_per_node": attr.string(
        default = "1",
        doc = """workers per node: an int in 1..1024, or "gpu", "cpu", "xpu", "auto" as for
        torchrun. Default 1. In a `select()`, write the values as strings ("4").
        Run time: PET_NPROC_PER_NODE.""",
    ),
    "nnodes": attr.string(
        default = "",
        doc = """number of nodes, `N` or `"MIN:MAX"` for elastic jobs. Default None: as many as the
        cluster description at run time names (TF_CONFIG, SLURM, Kubernetes), else 1.
        Run time: PET_NNODES.""",
    ),
    "max_restarts": attr.int(
        default = 0,
        doc = """how often torchrun restarts the worker group after a failure. Default 0.
        Run time: PET_MAX_RESTARTS.""",
    ),
    "rdzv_backend": attr.string(
        default = "c10d",
        doc = """torch elastic rendezvous backend: "c10d" (default), "static", "etcd", "etcd-v2".
        Run time: PET_RDZV_BACKEND.""",
    ),
    "rdzv_endpoint": attr.string(
        default = "",
        doc = """"HOST[:PORT]" of the rendezvous. Default "": on several nodes the chief's, from
        the cluster description; on one node a free loopback port, as `torchrun --standalone` does.
        Run time: PET_RDZV_ENDPOINT.""",
    ),
    "rdzv_conf": attr.string_dict(
        default = {},
        doc = """dict of extra rendezvous settings, e.g. `{"join_timeout": "600"}`. Default {}.
        Run time: PET_RDZV_CONF ("k=v,k2=v2").""",
    ),
    "torchrun_args": attr.string_list(
        default = [],
        doc = """further torchrun flags, e.g. `["--log-dir=/tmp/logs", "--tee=3"]`; the settings
        above have their own arguments and may not be repeated here. Default [].""",
    ),
    "hang_timeout": attr.string(
        default = "",
        doc = """seconds with no collective completing on any rank while one waits in one, after
        which the job is reported as hung (who waits for whom, in which collective, every rank's
        stacks) and stopped, exit 124. "0" is off. Default: off for a binary; for a
        py_distributed_test, a third of the test's timeout, so that the report comes before Bazel
        stops the test. Run time: PY_DISTRIBUTED_HANG_TIMEOUT.""",
    ),
    "gpus": attr.int(
        default = 0,
        doc = """GPUs each node claims for its ranks when it starts, as non-blocking locks under
        /dev/shm held for the job's life, so concurrent `bazel test`s get disjoint GPUs; the ranks
        see them as CUDA_VISIBLE_DEVICES, each its own as `cuda:LOCAL_RANK`. The pool is the GPUs
        that NVML sees, or those CUDA_VISIBLE_DEVICES lists. Too few free: the job waits, one line
        a minute (PY_DISTRIBUTED_GPU_WAIT); too few in all: it fails at once. With
        `nproc_per_node = "gpu"` it is the rank count (0: every GPU of the pool). A test is tagged
        `resources:gpu:N` on Bazel 6.2 and later (docs/gpus.md). Default 0.
        Run time: PY_DISTRIBUTED_GPUS.""",
    ),
    # A BUILD-only choice with no run-time override: Bazel checks it, and nothing else does.
    "worker_entry": attr.string(
        default = "stub",
        values = ["pythonpath", "stub"],
        doc = """how workers start. "stub" (default): through this binary's own Bazel stub, so each
        worker has the launcher's imports, data and interpreter. "pythonpath": as the bare
        interpreter with PYTHONPATH set from the launcher's sys.path (the seed's
        set_python_path_in_subprocess), for builds whose stub cannot start twice.""",
    ),
    "start_method": attr.string(
        default = "",
        doc = """how torch elastic starts each worker, as torchrun's --start-method: "spawn" (the
        default), a new process as `worker_entry` says; "fork", forked from the launcher, which
        has imported torch; "forkserver", forked from a server that has imported torch and the
        modules `main` imports at its top level. Either warm start falls back to spawn, with a
        notice, where it cannot apply (docs/using.md, Start methods). Default: spawn.
        Run time: PET_START_METHOD.""",
    ),
}

# Settings that BUILD writes as an int, or None for unset, and the rule takes as a string, since
# their other values are words ("gpu") or ranges ("1:4").
_INT_OR_STRING = ["hang_timeout", "nnodes", "nproc_per_node"]

def split_settings(kwargs, defaults = {}):
    """A public macro's keyword arguments, split into the torchrun settings and the rest.

    Args:
      kwargs: the macro's `**kwargs`.
      defaults: the macro's own defaults of settings, over the attributes' (a test's 2 ranks).

    Returns:
      `(settings, rest)`: the settings as the settings rule's attributes take them (ints of
      `_INT_OR_STRING` and rdzv_conf's values as strings, None left to the attribute's default; a
      `select()` as it is), and every other argument, unchanged.
    """
    settings, rest = {}, {}
    for key, value in dict(defaults, **kwargs).items():
        if key not in SETTINGS:
            rest[key] = value
        elif value != None:
            settings[key] = _as_attribute(key, value)
    return settings, rest

def _as_attribute(key, value):
    if key in _INT_OR_STRING and type(value) in ("int", "float"):
        return str(value)
    if type(value) == "dict":
        return {k: str(v) for k, v in value.items()}
    return value
