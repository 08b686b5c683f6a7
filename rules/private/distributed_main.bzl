"""The rule that holds a py_distributed_binary's torchrun settings and writes its main.

The settings are typed attributes, so `select()` works on each of them. Their values are checked by
the runtime's own checker (`py_distributed.check_build`), run as this rule's only action: the
grammar of every value lives in the runtime alone, and a bad value fails the build with the same
message a bad PET_* variable gets at run time.
"""

def _runfiles_path(*parts):
    """The path of a file under the runfiles root, as `Runfiles.Rlocation` takes it."""
    return "/".join([part for part in parts if part])

def _file_runfiles_path(ctx, file):
    # rules_python's runfiles_root_path: files of other repositories have short paths "../<repo>/...".
    if file.short_path.startswith("../"):
        return file.short_path[3:]
    return _runfiles_path(ctx.workspace_name, file.short_path)

def _distributed_main_impl(ctx):
    repo = ctx.label.workspace_name
    target = ("@%s" % repo if repo else "") + "//%s:%s" % (ctx.label.package, ctx.attr.binary)

    # Only what BUILD says: the rest is left to the cluster description or torchrun's defaults.
    settings = {
        "max_restarts": str(ctx.attr.max_restarts),
        "nnodes": ctx.attr.nnodes,
        "nproc_per_node": ctx.attr.nproc_per_node,
        "rdzv_backend": ctx.attr.rdzv_backend,
        "rdzv_conf": ",".join(["%s=%s" % item for item in sorted(ctx.attr.rdzv_conf.items())]),
        "rdzv_endpoint": ctx.attr.rdzv_endpoint,
        "start_method": ctx.attr.start_method,
    }
    args = ctx.actions.args()
    args.add("--target", target)
    args.add("--template", ctx.file._template)
    args.add("--out", ctx.outputs.out)

    # The stub is the py_binary's own executable, which depends on this file, so its path comes from
    # the label: sys.argv[0] at run time is the main .py, never the stub.
    args.add("--stub", _runfiles_path(repo or ctx.workspace_name, ctx.label.package, ctx.attr.binary))
    args.add("--main", _file_runfiles_path(ctx, ctx.file.main))
    args.add("--worker-entry", ctx.attr.worker_entry)
    if ctx.attr.test:
        args.add("--test")
    args.add_all(["%s=%s" % (k, v) for k, v in sorted(settings.items()) if v], format_each = "--setting=%s")
    args.add_all(ctx.attr.torchrun_args, format_each = "--torchrun-arg=%s")
    ctx.actions.run(
        executable = ctx.executable._check_build,
        arguments = [args],
        inputs = [ctx.file._template],
        outputs = [ctx.outputs.out],
        mnemonic = "PyDistributedCheck",
        progress_message = "Checking the torchrun settings of %s" % target,
        # The checker is a py_binary: its stub runs the `python3` found on PATH.
        use_default_shell_env = True,
    )
    return [DefaultInfo(files = depset([ctx.outputs.out]))]

distributed_main = rule(
    implementation = _distributed_main_impl,
    doc = "Checks a py_distributed_binary's torchrun settings and writes its main .py.",
    attrs = {
        "binary": attr.string(mandatory = True, doc = "Name of the py_binary in this package."),
        "main": attr.label(mandatory = True, allow_single_file = [".py"], doc = "The user's main."),
        "max_restarts": attr.int(default = 0, doc = "torchrun's --max-restarts."),
        "nnodes": attr.string(doc = "torchrun's --nnodes; empty: from the cluster description."),
        "nproc_per_node": attr.string(default = "1", doc = "torchrun's --nproc-per-node."),
        "out": attr.output(mandatory = True, doc = "The .py file to write."),
        "rdzv_backend": attr.string(default = "c10d", doc = "torchrun's --rdzv-backend."),
        "rdzv_conf": attr.string_dict(doc = "torchrun's --rdzv-conf, as a dict."),
        "rdzv_endpoint": attr.string(doc = "torchrun's --rdzv-endpoint; empty: decided at run time."),
        "start_method": attr.string(doc = "torchrun's --start-method: spawn, fork or forkserver; empty: spawn."),
        "test": attr.bool(doc = "Whether the binary is a py_test: its launcher speaks Bazel's test protocol."),
        "torchrun_args": attr.string_list(doc = "Further torchrun flags."),
        # A BUILD-only choice with no run-time override: Bazel checks it, and nothing else does.
        "worker_entry": attr.string(
            default = "stub",
            values = ["pythonpath", "stub"],
            doc = "How workers start: through the binary's stub, or with PYTHONPATH.",
        ),
        "_check_build": attr.label(
            default = Label("//runtime:check_build"),
            executable = True,
            cfg = "exec",
        ),
        "_template": attr.label(default = "main.py.tpl", allow_single_file = True),
    },
)
