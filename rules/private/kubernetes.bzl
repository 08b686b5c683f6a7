"""The `<name>.k8s` target of a py_distributed_binary: its JobSet and PyTorchJob manifests.

The manifests are written by the runtime's own generator (`py_distributed.submit.kubernetes`), run
as this rule's only action, as the settings rule runs the settings checker: what a value may be, and
what each manifest says, lives in the runtime alone, and a bad value fails the build with one line.
The binary's own settings (nnodes, nproc_per_node, max_restarts) come from its settings file, the
input of that action; the `k8s_*` attributes are this target's.
The container image comes from the target's `image`, or from the `//rules:k8s_image` flag, which
wins, so that a build can name the image it has just pushed:
`bazel build //train:model.k8s --@rules_py_distributed//rules:k8s_image=ghcr.io/me/model:v2`.
"""

load(":settings.bzl", "PyDistributedSettingsInfo", "label_text")

K8sImageInfo = provider(
    doc = "The value of the k8s_image flag.",
    fields = {"image": "The container image reference; empty where the flag is unset."},
)

def _k8s_image_flag_impl(ctx):
    return [K8sImageInfo(image = ctx.build_setting_value)]

k8s_image_flag = rule(
    implementation = _k8s_image_flag_impl,
    build_setting = config.string(flag = True),
    doc = "The container image of every `.k8s` target, over the target's own `image`.",
)

def _kubernetes_manifests_impl(ctx):
    target = label_text(ctx.label)
    settings = ctx.attr.settings[PyDistributedSettingsInfo]
    jobset = ctx.actions.declare_file(settings.binary + ".jobset.yaml")
    pytorchjob = ctx.actions.declare_file(settings.binary + ".pytorchjob.yaml")
    args = ctx.actions.args()
    args.add("--target", target)
    args.add("--settings", settings.file)
    args.add("--image", ctx.attr.image)
    args.add("--image-flag", ctx.attr._image_flag[K8sImageInfo].image)
    args.add("--binary-path", ctx.attr.binary_path)
    args.add("--nodes", ctx.attr.nodes)
    args.add_all(["%s=%s" % item for item in sorted(ctx.attr.resources.items())], format_each = "--resource=%s")
    args.add("--jobset", jobset)
    args.add("--pytorchjob", pytorchjob)
    ctx.actions.run(
        executable = ctx.executable._generator,
        arguments = [args],
        inputs = [settings.file],
        outputs = [jobset, pytorchjob],
        mnemonic = "PyDistributedKubernetes",
        progress_message = "Writing the Kubernetes manifests of %s" % target,
        # The generator is a py_binary: its stub runs the `python3` found on PATH.
        use_default_shell_env = True,
    )
    return [DefaultInfo(files = depset([jobset, pytorchjob]))]

kubernetes_manifests = rule(
    implementation = _kubernetes_manifests_impl,
    doc = "Writes `<binary>.jobset.yaml` and `<binary>.pytorchjob.yaml` for a py_distributed_binary.",
    attrs = {
        "binary_path": attr.string(doc = "The binary's path inside the image; empty: /app/<package>/<binary>."),
        "image": attr.string(doc = "The container image; the k8s_image flag wins over it."),
        "nodes": attr.int(default = 0, doc = "Pods, one per node; 0: nnodes's N or MAX, else 1."),
        "resources": attr.string_dict(doc = "Each pod's resource requests, e.g. {\"memory\": \"32Gi\"}."),
        "settings": attr.label(
            mandatory = True,
            providers = [PyDistributedSettingsInfo],
            doc = "The binary's settings target: its name, package, nnodes, nproc_per_node and max_restarts.",
        ),
        "_generator": attr.label(
            default = Label("//runtime:kubernetes_manifests"),
            executable = True,
            cfg = "exec",
        ),
        "_image_flag": attr.label(default = Label("//rules:k8s_image"), providers = [K8sImageInfo]),
    },
)
