"""The `<name>.slurm` target of a py_distributed_binary: `bazel run` it to submit the binary to SLURM.

A py_binary whose data is the binary, so that its runfiles tree holds the binary's (the nodes run
the binary from that tree), and whose main, written from slurm_main.py.tpl, calls
`py_distributed.submit.slurm.main`.
"""

def _label_text(label, name = None):
    """A label as users write it: `//pkg:name`, or `//pkg:<name>` of the same package.

    Labels of another repository start with `@repo`.
    """
    repo = label.workspace_name
    return ("@%s" % repo if repo else "") + "//%s:%s" % (label.package, name or label.name)

def _runfiles_path(ctx, file):
    """The path of `file` under the runfiles root, as `Runfiles.Rlocation` takes it."""

    # Files of other repositories have short paths "../<repo>/..." (rules_python's runfiles_root_path).
    if file.short_path.startswith("../"):
        return file.short_path[3:]
    return "%s/%s" % (ctx.workspace_name, file.short_path)

def _slurm_main_impl(ctx):
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = ctx.outputs.out,
        substitutions = {
            "{binary_label}": _label_text(ctx.attr.binary.label),
            "{binary_main}": repr(_runfiles_path(ctx, ctx.file.binary_main)),
            "{binary}": repr(_label_text(ctx.attr.binary.label)),
            "{stub}": repr(_runfiles_path(ctx, ctx.executable.binary)),
            "{target}": repr(_label_text(ctx.label, ctx.attr.submitter)),
        },
    )
    return [DefaultInfo(files = depset([ctx.outputs.out]))]

slurm_main = rule(
    implementation = _slurm_main_impl,
    doc = "Writes the main of a py_distributed_binary's `.slurm` target.",
    attrs = {
        "binary": attr.label(
            mandatory = True,
            executable = True,
            cfg = "target",
            doc = "The py_distributed_binary to submit.",
        ),
        "binary_main": attr.label(
            mandatory = True,
            allow_single_file = [".py"],
            doc = "The binary's generated main, which holds its BUILD settings.",
        ),
        "out": attr.output(mandatory = True, doc = "The .py file to write."),
        "submitter": attr.string(mandatory = True, doc = "Name of the py_binary in this package."),
        "_template": attr.label(default = "slurm_main.py.tpl", allow_single_file = True),
    },
)

def py_distributed_slurm(name, binary, binary_main, py_binary_rule, **kwargs):
    """`name`: a py_binary that submits `binary` to SLURM (`bazel run :name -- --nodes=2 -- ARGS`).

    Args:
      name: the submitter's name, `<binary>.slurm` by convention.
      binary: the py_distributed_binary to submit.
      binary_main: the binary's generated main, whose arguments are its BUILD settings.
      py_binary_rule: the py_binary rule the binary was built with.
      **kwargs: passed to `py_binary_rule`: tags, testonly, visibility.
    """
    main = "_%s_main.py" % name.replace(".", "_")
    slurm_main(
        name = "_%s_main" % name,
        binary = binary,
        binary_main = binary_main,
        out = main,
        submitter = name,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", False),
        visibility = ["//visibility:private"],
    )
    py_binary_rule(
        name = name,
        srcs = [main],
        main = main,
        data = [binary],
        deps = [Label("//runtime")],
        **kwargs
    )
