"""The `<name>.slurm` target of a py_distributed_binary: `bazel run` it to submit the binary to SLURM.

A py_binary whose data is the binary, so that its runfiles tree holds the binary's (the nodes run
the binary from that tree), and whose main, written from slurm_main.py.tpl, calls
`py_distributed.submit.slurm.main` with the binary's settings file, which names its label and stub.
"""

load(":settings.bzl", "PyDistributedSettingsInfo", "label_text")

def _slurm_main_impl(ctx):
    settings = ctx.attr.settings[PyDistributedSettingsInfo]
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = ctx.outputs.out,
        substitutions = {
            "{binary_label}": label_text(ctx.label, settings.binary),
            "{settings}": repr(settings.path),
            "{target}": repr(label_text(ctx.label, ctx.attr.submitter)),
        },
    )
    return [DefaultInfo(files = depset([ctx.outputs.out]))]

slurm_main = rule(
    implementation = _slurm_main_impl,
    doc = "Writes the main of a py_distributed_binary's `.slurm` target.",
    attrs = {
        "out": attr.output(mandatory = True, doc = "The .py file to write."),
        "settings": attr.label(
            mandatory = True,
            providers = [PyDistributedSettingsInfo],
            doc = "The binary's settings target, whose file is in the binary's runfiles.",
        ),
        "submitter": attr.string(mandatory = True, doc = "Name of the py_binary in this package."),
        "_template": attr.label(default = "slurm_main.py.tpl", allow_single_file = True),
    },
)

def py_distributed_slurm(name, binary, settings, py_binary_rule, **kwargs):
    """`name`: a py_binary that submits `binary` to SLURM (`bazel run :name -- --nodes=2 -- ARGS`).

    Args:
      name: the submitter's name, `<binary>.slurm` by convention.
      binary: the py_distributed_binary to submit.
      settings: the binary's settings target.
      py_binary_rule: the py_binary rule the binary was built with.
      **kwargs: passed to `py_binary_rule`: tags, testonly, visibility.
    """
    main = "_%s_main.py" % name.replace(".", "_")
    slurm_main(
        name = "_%s_main" % name,
        settings = settings,
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
