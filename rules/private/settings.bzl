"""The rule that holds a py_distributed_binary's torchrun settings: one settings file, and the main.

The settings are this rule's attributes (attributes.bzl), so `select()` works on each of them. Its
one action runs the runtime's own checker (`//runtime:check_build`), which holds the resolved values
to their grammar and writes them into one JSON file in the binary's runfiles: the grammar of every
value lives in the runtime alone, and a bad value fails the build with the same message a bad PET_*
variable gets at run time. That file is all that the binary's main, its `.slurm` submitter and its
`.k8s` manifests read of BUILD (`py_distributed.settings.build`).
"""

load(":attributes.bzl", "SETTINGS")

PyDistributedSettingsInfo = provider(
    doc = "The settings file of a py_distributed_binary, for the targets made beside it.",
    fields = {
        "binary": "The binary's name, in the settings target's package.",
        "file": "The settings file (File).",
        "path": "Its path under the runfiles root, as `Runfiles.Rlocation` takes it.",
    },
)

def label_text(label, name = None):
    """A label as users write it: `//pkg:name`, or with `name`, `//pkg:<name>` of the same package.

    Labels of another repository start with `@repo`. Every message and generated file names a
    target by this text.
    """
    repo = label.workspace_name
    return ("@%s" % repo if repo else "") + "//%s:%s" % (label.package, name or label.name)

def _runfiles_path(ctx, *parts):
    """The runfiles path (as `Runfiles.Rlocation` takes it) of a short_path, or package and name.

    A short_path of this rule's repository is relative to its root; one of another repository starts
    with "../<repo>/" (rules_python's runfiles_root_path).
    """
    path = "/".join([part for part in parts if part])
    if path.startswith("../"):
        return path[3:]
    return "%s/%s" % (ctx.label.workspace_name or ctx.workspace_name, path)

def _distributed_settings_impl(ctx):
    target = label_text(ctx.label, ctx.attr.binary)
    settings = ctx.actions.declare_file(ctx.label.name + ".json")
    path = _runfiles_path(ctx, settings.short_path)
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = ctx.outputs.out,
        substitutions = {"{label}": target, "{settings}": repr(path)},
    )
    args = ctx.actions.args()
    args.add("--target", target)
    args.add("--out", settings)

    # The stub is the py_binary's own executable, which depends on this rule, so its path comes from
    # the label: sys.argv[0] at run time is the main .py, never the stub.
    args.add("--stub", _runfiles_path(ctx, ctx.label.package, ctx.attr.binary))
    args.add("--main", _runfiles_path(ctx, ctx.file.main.short_path))
    if ctx.attr.test:
        args.add("--test")

    # The attributes as Bazel resolved them, select() and all; the checker owns their grammar.
    args.add("--attributes", json.encode({key: getattr(ctx.attr, key) for key in SETTINGS}))
    ctx.actions.run(
        executable = ctx.executable._check_build,
        arguments = [args],
        outputs = [settings],
        mnemonic = "PyDistributedCheck",
        progress_message = "Checking the torchrun settings of %s" % target,
        # The checker is a py_binary: its stub runs the `python3` found on PATH.
        use_default_shell_env = True,
    )
    return [
        DefaultInfo(files = depset([settings]), runfiles = ctx.runfiles([settings])),
        PyDistributedSettingsInfo(binary = ctx.attr.binary, file = settings, path = path),
    ]

distributed_settings = rule(
    implementation = _distributed_settings_impl,
    doc = "Checks a py_distributed_binary's torchrun settings into its settings file; writes its main.",
    attrs = dict(
        SETTINGS,
        binary = attr.string(mandatory = True, doc = "Name of the py_binary in this package."),
        main = attr.label(mandatory = True, allow_single_file = [".py"], doc = "The user's main."),
        out = attr.output(mandatory = True, doc = "The binary's main .py, to write."),
        test = attr.bool(doc = "Whether the binary is a py_test: its launcher speaks Bazel's test protocol."),
        _check_build = attr.label(
            default = Label("//runtime:check_build"),
            executable = True,
            cfg = "exec",
        ),
        _template = attr.label(default = "main.py.tpl", allow_single_file = True),
    ),
)
