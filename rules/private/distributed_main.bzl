"""The rule that writes a py_distributed_binary's main: a few lines that hand over to the runtime."""

def _runfiles_path(repo, package, name):
    """The path of a file under the runfiles root, as `Runfiles.Rlocation` takes it."""
    return "/".join([part for part in (repo, package, name) if part])

def _file_runfiles_path(ctx, file):
    # rules_python's runfiles_root_path: files of other repositories have short paths "../<repo>/...".
    if file.short_path.startswith("../"):
        return file.short_path[3:]
    return _runfiles_path(ctx.workspace_name, "", file.short_path)

def _distributed_main_impl(ctx):
    # The stub is the py_binary's own executable, which depends on this file, so its path comes from
    # the label: sys.argv[0] at run time is the main .py, never the stub.
    stub = _runfiles_path(ctx.label.workspace_name or ctx.workspace_name, ctx.label.package, ctx.attr.binary)
    target = "//%s:%s" % (ctx.label.package, ctx.attr.binary)
    if ctx.label.workspace_name:
        target = "@%s%s" % (ctx.label.workspace_name, target)
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = ctx.outputs.out,
        substitutions = {
            "{build_values}": repr(ctx.attr.build_values),
            "{label}": target,
            "{main}": repr(_file_runfiles_path(ctx, ctx.file.main)),
            "{stub}": repr(stub),
            "{target}": repr(target),
            "{torchrun_args}": repr(ctx.attr.torchrun_args),
            "{worker_entry}": repr(ctx.attr.worker_entry),
        },
    )
    return [DefaultInfo(files = depset([ctx.outputs.out]))]

distributed_main = rule(
    implementation = _distributed_main_impl,
    doc = "Writes the main .py of a py_distributed_binary, with its stub's runfiles path and torchrun values.",
    attrs = {
        "binary": attr.string(mandatory = True, doc = "Name of the py_binary in this package."),
        "build_values": attr.string_dict(doc = "torchrun knob -> value, as written in BUILD."),
        "main": attr.label(mandatory = True, allow_single_file = [".py"], doc = "The user's main."),
        "out": attr.output(mandatory = True, doc = "The .py file to write."),
        "torchrun_args": attr.string_list(doc = "Further torchrun flags."),
        "worker_entry": attr.string(mandatory = True, doc = "How workers start: stub or pythonpath."),
        "_template": attr.label(default = "main.py.tpl", allow_single_file = True),
    },
)
