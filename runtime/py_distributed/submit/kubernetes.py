"""A py_distributed_binary's Kubernetes manifests: a JobSet and a Kubeflow PyTorchJob.

`bazel build //pkg:name.k8s` runs this (rules/private/kubernetes.bzl) and writes both; a user
applies the one whose controller the cluster runs. Every pod runs the binary's launcher once, as
one node, from the image the user names, and is told what cluster discovery
(`cluster/kubernetes.py`) reads: the chief's address and port, the node count and its own index.

- JobSet (jobset.x-k8s.io/v1alpha2; JobSet 0.7 or newer): one Indexed Job of N pods. JobSet sets no
  variables, so the manifest does: PET_MASTER_ADDR is node 0's name under the JobSet's headless
  service, `<jobset>-node-0-0.<jobset>`, built from the pod's own JobSet label so that a renamed
  JobSet still finds its chief; PET_MASTER_PORT; PET_NNODES. The node's index is the Job
  controller's JOB_COMPLETION_INDEX.
- PyTorchJob (kubeflow.org/v1; training-operator 1.7 or newer): a Master and N-1 Workers. The
  operator sets MASTER_ADDR/PORT, PET_NNODES, PET_NODE_RANK and, from spec.nprocPerNode,
  PET_NPROC_PER_NODE, which is why the manifest names the binary's own nproc_per_node there.

Both set PET_LOCAL_ADDR to the pod's IP: a launcher then looks up no name to find its own address,
and none resolves before the pods' DNS records exist, which can take a moment after they start;
torch's store client waits for the chief's name to resolve.

Restarts, in both: torchrun restarts the worker group after a rank fails, up to max_restarts times,
in the pods; a launcher that then exits 1-127 (the failed rank's code, 2 for bad input) ends the
job. A pod killed by a signal or disrupted (exit 128-255: out of memory, evicted, preempted, its
node lost) is the scheduler's to restart, up to max_restarts times: training-operator's ExitCode
restart policy (pkg/util/train/train_util.go, IsRetryableExitCode), which the JobSet mirrors with a
pod failure policy, restarting all its nodes so that the chief's rendezvous store starts afresh.

The files are JSON, which is YAML: no YAML library is needed to write them.
"""

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from py_distributed import grammar
from py_distributed.cluster import DEFAULT_PORT
from py_distributed.errors import UsageError, exit_on_usage_error

Manifest = dict[str, Any]

IMAGE_FLAG = "--@rules_py_distributed//rules:k8s_image"
# PyTorchJob takes its port from the container of this name (pytorch_types.go,
# PyTorchJobDefaultContainerName); the JobSet's container has the same name, for one pod template.
CONTAINER = "pytorch"
# JobSet's replicated job; its pods are <jobset>-node-<job index>-<pod index>.
REPLICATED_JOB = "node"
# The label JobSet puts on its pods (jobset_controller.go, labelAndAnnotateObject).
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
# The last exit code that ends a job rather than restart a pod (IsRetryableExitCode: >= 128).
_LAST_FINAL_EXIT = 127
# A DNS-1035 label, which JobSet and PyTorchJob names must be, and their pods' host names too.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX = 63
# A container image reference: [registry/]repository[:tag][@digest].
_IMAGE = re.compile(r"[A-Za-z0-9][\w.\-/:@+]*")
# A resource name ("cpu", "nvidia.com/gpu") and a quantity ("500m", "64Gi", "1e3") as Kubernetes
# spells them (apimachinery's resource.Quantity).
_RESOURCE = re.compile(r"([a-z0-9][-a-z0-9.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# An indented list of numbers: a line ends at its bracket, which no JSON string holds.
_NUMBERS = re.compile(r"\[\n[\d,\s]+\]")
_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")


@dataclass(frozen=True)
class Job:
    """What both manifests say, checked."""

    name: str  # metadata.name of both objects
    image: str
    command: str  # the binary's path inside the image
    nodes: int  # pods
    nnodes: str  # PET_NNODES: the binary's nnodes, else `nodes`
    nproc_per_node: str
    max_restarts: int
    resources: Mapping[str, str]  # requests; limits too, for all but cpu


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
) -> Job:
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
    longest = f"{name}-{REPLICATED_JOB}-0-{count - 1}"
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
    return Job(
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


def jobset(job: Job) -> Manifest:
    """A JobSet of one Indexed Job whose N pods are the nodes; failures as the module says."""
    chief = f"$(JOBSET_NAME)-{REPLICATED_JOB}-0-0.$(JOBSET_NAME)"  # the kubelet expands $(NAME)
    env = [
        _field("JOBSET_NAME", f"metadata.labels['{JOBSET_NAME_LABEL}']"),
        {"name": "PET_MASTER_ADDR", "value": chief},
        {"name": "PET_MASTER_PORT", "value": str(DEFAULT_PORT)},
        {"name": "PET_NNODES", "value": job.nnodes},
    ]
    final_exits = list(range(1, _LAST_FINAL_EXIT + 1))
    nodes_job = {
        "completionMode": "Indexed",
        "completions": job.nodes,
        "parallelism": job.nodes,
        # One failed pod fails the Job, and the JobSet's failure policy decides what follows.
        "backoffLimit": 0,
        "podFailurePolicy": {
            "rules": [
                # Evicted or preempted: a restart, whatever the launcher's exit.
                {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": final_exits,
                    },
                },
            ]
        },
        "template": _pod_template(job, env, ports=[], restart_policy="Never"),
    }
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": job.name},
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": {
                "maxRestarts": job.max_restarts,
                # The old pods, the old chief's store among them, are gone before new ones start.
                "restartStrategy": "BlockingRecreate",
                "rules": [
                    {
                        "name": "launcher_exit_is_final",
                        "action": "FailJobSet",
                        "onJobFailureReasons": ["PodFailurePolicy"],
                    }
                ],
            },
            "replicatedJobs": [
                {"name": REPLICATED_JOB, "replicas": 1, "template": {"spec": nodes_job}}
            ],
        },
    }


def pytorchjob(job: Job) -> Manifest:
    """A PyTorchJob of a Master and N-1 Workers; failures as the module says."""
    # The operator's MASTER_PORT is the port of this name (envvar.go, getPortFromPyTorchJob).
    ports = [{"name": "pytorchjob-port", "containerPort": DEFAULT_PORT}]
    template = _pod_template(job, [], ports=ports, restart_policy=None)
    replicas = {"Master": 1, "Worker": job.nodes - 1}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": job.name},
        "spec": {
            # Unset, the operator would set PET_NPROC_PER_NODE=auto over the binary's own value.
            "nprocPerNode": job.nproc_per_node,
            # cleanPodPolicy Running: a failed job's pods still running are deleted; the finished
            # ones stay, with their logs.
            "runPolicy": {"backoffLimit": job.max_restarts, "cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": {
                role: {"replicas": count, "restartPolicy": "ExitCode", "template": template}
                for role, count in replicas.items()
                if count
            },
        },
    }


def _pod_template(
    job: Job, env: list[Manifest], *, ports: list[Manifest], restart_policy: str | None
) -> Manifest:
    container: Manifest = {
        "name": CONTAINER,
        "image": job.image,
        "command": [job.command],
        "env": [*env, _field("PET_LOCAL_ADDR", "status.podIP")],
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if ports:
        container["ports"] = ports
    if job.resources:
        resources: Manifest = {"requests": dict(job.resources)}
        # No CPU limit: it would throttle the data loaders and gain the node nothing.
        limits = {key: value for key, value in job.resources.items() if key != "cpu"}
        if limits:
            resources["limits"] = limits
        container["resources"] = resources
    spec: Manifest = {
        "containers": [container],
        # torch's DataLoader workers and NCCL share memory through /dev/shm, which a container
        # gets only 64 MiB of unless given a memory-backed volume.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {"spec": spec}


def _field(name: str, path: str) -> Manifest:
    """A variable from the pod's own fields (the downward API)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the .k8s target's label, for messages")
    parser.add_argument("--binary", required=True, help="the py_distributed_binary's name")
    parser.add_argument("--package", required=True, help="its package")
    parser.add_argument("--image", default="", help="the target's k8s_image")
    parser.add_argument("--image-flag", default="", help=f"{IMAGE_FLAG}'s value")
    parser.add_argument("--binary-path", default="", help="the binary's path inside the image")
    parser.add_argument("--nodes", type=int, default=0, help="pods; 0: from nnodes")
    parser.add_argument("--nnodes", default="", help="the binary's nnodes")
    parser.add_argument("--nproc-per-node", default="1", help="the binary's nproc_per_node")
    parser.add_argument("--max-restarts", type=int, default=0, help="the binary's max_restarts")
    parser.add_argument("--resource", action="append", default=[], help="NAME=QUANTITY")
    parser.add_argument("--jobset", required=True, help="the JobSet file to write")
    parser.add_argument("--pytorchjob", required=True, help="the PyTorchJob file to write")
    args = parser.parse_args(argv)
    with exit_on_usage_error(args.target):
        checked = checked_job(
            binary=args.binary,
            package=args.package,
            image=args.image,
            image_flag=args.image_flag,
            binary_path=args.binary_path,
            nodes=args.nodes,
            nnodes=args.nnodes,
            nproc_per_node=args.nproc_per_node,
            max_restarts=args.max_restarts,
            resources=dict(item.split("=", 1) for item in args.resource),
        )
    for path, manifest in ((args.jobset, jobset(checked)), (args.pytorchjob, pytorchjob(checked))):
        with open(path, "w", encoding="utf-8") as out:
            out.write(dumps(manifest))


def dumps(manifest: Manifest) -> str:
    """`manifest` as indented JSON, each list of numbers (the exit codes) on one line."""
    text = json.dumps(manifest, indent=2)
    return _NUMBERS.sub(lambda numbers: json.dumps(json.loads(numbers[0])), text) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
