"""The build action of every `<name>.k8s` target: check its values, then write its manifests.

`bazel build //pkg:name.k8s` runs this (rules/private/kubernetes.bzl) with the binary's settings
file (`py_distributed.settings.build`), whose nnodes, nproc_per_node and max_restarts the manifests
repeat, and the target's own `k8s_*` values. `checked_job` holds them to what Kubernetes accepts (a
bad one fails the build with one line naming it and the fix); `kubernetes_manifests` then makes the
JobSet and the PyTorchJob of the checked `Job`.
"""

import argparse
import re
import sys
from collections.abc import Mapping, Sequence

from py_distributed import grammar
from py_distributed.errors import UsageError, exit_on_usage_error
from py_distributed.settings import build
from py_distributed.submit import kubernetes_manifests as manifests

IMAGE_FLAG = "--@rules_py_distributed//rules:k8s_image"
# A DNS-1035 label, which JobSet and PyTorchJob names must be, and their pods' host names too.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX = 63
# A container image reference: [registry/]repository[:tag][@digest].
_IMAGE = re.compile(r"[A-Za-z0-9][\w.\-/:@+]*")
# A resource name ("cpu", "nvidia.com/gpu") and a quantity ("500m", "64Gi", "1e3") as Kubernetes
# spells them (apimachinery's resource.Quantity).
_RESOURCE = re.compile(r"([a-z0-9][-a-z0-9.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")


def checked_job(
    *,
    binary: str,
    package: str,
    image: str,
    image_flag: str = "",
    binary_path: str = "",
    nodes: int = 0,
    nnodes: str = "",
    nproc_per_node: str = "1",
    max_restarts: int = 0,
    resources: Mapping[str, str] | None = None,
) -> manifests.Job:
    """The checked `Job` of a binary's `.k8s` target; UsageError names a bad value and the fix.

    `image_flag` (the build setting) wins over `image` (the target's attribute); `nodes` 0 means
    nnodes's N, or its MAX, or 1.
    """
    chosen, source = (image_flag, IMAGE_FLAG) if image_flag else (image, "k8s_image")
    if not chosen:
        raise UsageError(
            f"no container image: set k8s_image on the target, or build with {IMAGE_FLAG}=IMAGE"
        )
    if not _IMAGE.fullmatch(chosen):
        raise UsageError(f"{source}={chosen!r}: use an image reference, REGISTRY/REPOSITORY:TAG")
    command = binary_path or "/".join(["/app", *([package] if package else []), binary])
    if not command.startswith("/"):
        raise UsageError(
            f"k8s_binary_path={binary_path!r}: use the binary's absolute path inside the image"
        )
    count = _node_count(nodes, nnodes)
    name = binary.lower().replace("_", "-").replace(".", "-")
    # The longest pod host name: JobSet's <name>-node-0-<N-1> (PyTorchJob's: <name>-worker-<N-2>).
    longest = f"{name}-{manifests.REPLICATED_JOB}-0-{count - 1}"
    if not _DNS_LABEL.fullmatch(name) or len(longest) > _DNS_LABEL_MAX:
        raise UsageError(
            f"target name {binary!r} makes pod host names such as {longest!r}, which Kubernetes"
            f" refuses: rename it to lower-case letters, digits and '-', short enough for"
            f" {_DNS_LABEL_MAX} characters"
        )
    checked = dict(resources or {})
    for key, value in checked.items():
        if not _RESOURCE.fullmatch(key) or not _QUANTITY.fullmatch(value):
            raise UsageError(
                f"k8s_resources has {key!r}: {value!r}: use Kubernetes resource names and"
                f' quantities, e.g. {{"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "8"}}'
            )
    if nproc_per_node == "gpu" and not any(key.endswith("/gpu") for key in checked):
        raise UsageError(
            "nproc_per_node='gpu' but k8s_resources asks for no GPU: add one, e.g."
            ' "nvidia.com/gpu": "8"'
        )
    if max_restarts < 0:
        raise UsageError(f"max_restarts={max_restarts}: use an int >= 0")
    return manifests.Job(
        name=name,
        image=chosen,
        command=command,
        nodes=count,
        nnodes=nnodes or str(count),
        nproc_per_node=nproc_per_node,
        max_restarts=max_restarts,
        resources=checked,
    )


def _node_count(nodes: int, nnodes: str) -> int:
    """`nodes` where given and within nnodes, else nnodes's largest job, else one node."""
    low, high = (1, 1)
    if nnodes:
        try:
            low, high = grammar.nnodes(nnodes)
        except ValueError as error:
            raise UsageError(f"nnodes={nnodes!r}: {error}") from None
    if nodes < 0:
        raise UsageError(f"k8s_nodes={nodes}: use a number of nodes N > 0, or 0 for nnodes's")
    if nodes == 0:
        return high
    if nnodes and not low <= nodes <= high:
        raise UsageError(
            f"k8s_nodes={nodes} is outside nnodes={nnodes!r}: make them agree, or leave k8s_nodes"
            " unset to take nnodes's"
        )
    return nodes


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the .k8s target's label, for messages")
    parser.add_argument("--settings", required=True, help="the binary's settings file")
    parser.add_argument("--image", default="", help="the target's k8s_image")
    parser.add_argument("--image-flag", default="", help=f"{IMAGE_FLAG}'s value")
    parser.add_argument("--binary-path", default="", help="the binary's path inside the image")
    parser.add_argument("--nodes", type=int, default=0, help="pods; 0: from nnodes")
    parser.add_argument("--resource", action="append", default=[], help="NAME=QUANTITY")
    parser.add_argument("--jobset", required=True, help="the JobSet file to write")
    parser.add_argument("--pytorchjob", required=True, help="the PyTorchJob file to write")
    args = parser.parse_args(argv)
    binary = build.read(args.settings)
    package, _, name = binary.target.partition("//")[2].partition(":")
    with exit_on_usage_error(args.target):
        checked = checked_job(
            binary=name,
            package=package,
            image=args.image,
            image_flag=args.image_flag,
            binary_path=args.binary_path,
            nodes=args.nodes,
            # As checked_job's defaults where BUILD leaves them to the cluster or to torchrun.
            nnodes=binary.values.get("nnodes", ""),
            nproc_per_node=binary.values.get("nproc_per_node", "1"),
            max_restarts=int(binary.values.get("max_restarts", "0")),
            resources=dict(item.split("=", 1) for item in args.resource),
        )
    written = (
        (args.jobset, manifests.jobset, manifests.JOBSET_NAME_LABEL),
        (args.pytorchjob, manifests.pytorchjob, manifests.PYTORCHJOB_NAME_LABEL),
    )
    for path, manifest, label in written:
        with open(path, "w", encoding="utf-8") as out:
            out.write(manifests.dumps(manifest(checked), manifests.network_policy(checked, label)))


if __name__ == "__main__":
    main(sys.argv[1:])
