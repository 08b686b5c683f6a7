"""Implementation of py_distributed_binary, and what py_distributed_test shares with it: the settings
rule, which writes the settings file and the main, then the py rule."""

load(":attributes.bzl", "split_settings")
load(":kubernetes.bzl", "kubernetes_manifests")
load(":settings.bzl", "distributed_settings")
load(":slurm.bzl", "py_distributed_slurm")

def py_distributed_binary(
        name,
        srcs = [],
        main = None,
        deps = [],
        k8s_image = "",
        k8s_binary_path = "",
        k8s_nodes = 0,
        k8s_resources = {},
        py_binary_rule = None,
        **kwargs):
    """A py_binary that runs its main on N torchrun workers, each re-entering this binary.

    Run it (`bazel run`, or `bazel-bin/...` directly) and it starts torchrun in its own process;
    torchrun starts the workers, and each worker runs `main` as `__main__` with the binary's
    arguments, exactly as `torchrun main.py ARGS` would. Every torchrun setting (nproc_per_node and
    the others of rules/private/attributes.bzl, each documented there and in README's table) takes
    `select()`, and is checked at build time by the runtime's own checker; torchrun's environment
    variable for it (`PET_NPROC_PER_NODE=4`) overrides it at run time.

    It also makes `<name>.slurm`, which submits the binary to SLURM:
    `bazel run //pkg:name.slurm -- --nodes=2 -- ARGS` (docs/clusters.md), and `<name>.k8s`, its
    Kubernetes manifests.

    Args:
      name: the binary's name (`bazel run //pkg:name`).
      srcs: Python sources, as for py_binary; must contain `main`.
      main: the unmodified torchrun-style script the workers run. Default: the only file of `srcs`,
        else `<name>.py`.
      deps: py_library dependencies of `main`, torch among them; `//runtime` is added.
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
      **kwargs: the torchrun settings go to the settings rule; every other argument is passed
        unchanged to `py_binary_rule`: data, args, env, imports, python_version, visibility, tags,
        testonly, and any other py_binary attribute.
    """
    made = distributed_py(
        macro = "py_distributed_binary",
        name = name,
        rule = py_binary_rule,
        srcs = srcs,
        main = main,
        deps = deps,
        **kwargs
    )

    # Tagged manual: it builds only with an image, and `bazel build //...` names none.
    kubernetes_manifests(
        name = name + ".k8s",
        settings = made.settings,
        image = k8s_image,
        binary_path = k8s_binary_path,
        nodes = k8s_nodes,
        resources = {k: str(v) for k, v in k8s_resources.items()} if type(k8s_resources) == "dict" else k8s_resources,
        tags = ["manual"],
        testonly = kwargs.get("testonly", False),
        visibility = kwargs.get("visibility"),
    )

    py_distributed_slurm(
        name = name + ".slurm",
        binary = name,
        settings = made.settings,
        py_binary_rule = made.rule,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", False),
        visibility = kwargs.get("visibility"),
    )

def distributed_py(macro, name, rule, srcs, main, deps, test = False, settings_defaults = {}, **kwargs):
    """What py_distributed_binary and py_distributed_test share: the settings rule, then `rule`.

    Args:
      macro: the public macro's name, for messages.
      name: the target's name.
      rule: the py rule the user passed (py_binary or py_test), or None for Bazel's built-in one.
      srcs: as the public macro's.
      main: as the public macro's.
      deps: as the public macro's.
      test: whether `rule` is a py_test, whose launcher then speaks Bazel's test protocol.
      settings_defaults: the public macro's own defaults of torchrun settings.
      **kwargs: the torchrun settings, which go to the settings rule, and the arguments of `rule`.

    Returns:
      A struct: `rule`, the py rule used; `settings`, the settings target's label, whose
      PyDistributedSettingsInfo the `.slurm` and `.k8s` targets read.
    """

    # Decided here and only here, inside the macro: Bazel 9 has no native py rules, and reading one
    # when this file loads would break there (hedron PR #235).
    rule = rule or getattr(native, "py_test" if test else "py_binary", None)
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
    settings, rule_kwargs = split_settings(kwargs, settings_defaults)
    if test and "gpus" in settings:
        rule_kwargs["tags"] = _gpu_tags(rule_kwargs.get("tags"), settings["gpus"])
    settings_target = "_%s_py_distributed_settings" % name
    generated_main = "_%s_py_distributed_main.py" % name
    distributed_settings(
        name = settings_target,
        binary = name,
        main = main,
        out = generated_main,
        test = test,
        tags = kwargs.get("tags"),
        testonly = kwargs.get("testonly", test),
        visibility = ["//visibility:private"],
        **settings
    )
    rule(
        name = name,
        srcs = srcs + [generated_main],
        main = generated_main,
        deps = deps + [Label("//runtime")],
        # The settings file, which the main reads at run time.
        data = rule_kwargs.pop("data", []) + [settings_target],
        **rule_kwargs
    )
    return struct(rule = rule, settings = ":" + settings_target)

def _gpu_tags(tags, gpus):
    """A test's tags, with `resources:gpu:N` for its `gpus` where this Bazel counts such resources.

    Bazel 6.1 and later run tests tagged so only while `--local_resources=gpu=M` (7.1+) or
    `--local_extra_resources=gpu=M` has M left, so that no test waits in its sandbox for GPUs
    another holds; earlier ones ignore the tag, and the launcher's claim is enough alone. Bazel
    gives macros no version (`native.bazel_version` is WORKSPACE-only, bazel#8305), so the test
    is for `native.module_name`, from 6.2: on 6.1 the test is not tagged. A `select()`ed or
    unset `gpus` leaves the tags as they are.
    """
    if type(gpus) != "int" or gpus <= 0 or not hasattr(native, "module_name"):
        return tags
    return (tags or []) + ["resources:gpu:%d" % gpus]
