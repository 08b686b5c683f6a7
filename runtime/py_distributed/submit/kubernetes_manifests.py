"""A py_distributed_binary's Kubernetes manifests, a pure function of its checked `Job`: a JobSet
and a Kubeflow PyTorchJob.

A user applies the one whose controller the cluster runs. Every pod runs the binary's launcher
once, as one node, from the image the user names, and is told what cluster discovery
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

Each file holds, after its job, a NetworkPolicy that lets only the job's own pods reach them, on
every port (the stores, gloo and NCCL), as kubeflow/trainer#3120 proposes; pods read the job's
secret (docs/security.md) from the Secret `<name>-job-secret`, which the user makes for each
submission. A pod waits, its event naming the Secret, until it exists.

The files are JSON documents, which are YAML: no YAML library is needed to write them.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from py_distributed.cluster import DEFAULT_PORT
from py_distributed.settings.job_secret import FILE_ENV

Manifest = dict[str, Any]

# PyTorchJob takes its port from the container of this name (pytorch_types.go,
# PyTorchJobDefaultContainerName); the JobSet's container has the same name, for one pod template.
CONTAINER = "pytorch"
# JobSet's replicated job; its pods are <jobset>-node-<job index>-<pod index>.
REPLICATED_JOB = "node"
# The label JobSet puts on its pods (jobset_controller.go, labelAndAnnotateObject).
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
# The label training-operator puts on a PyTorchJob's pods (kubeflow.org/v1 common_types.go).
PYTORCHJOB_NAME_LABEL = "training.kubeflow.org/job-name"
# Where a pod reads the job's secret: a Secret's key, as a file only its user reads.
SECRET_KEY = "secret"
_SECRET_DIR = "/var/run/secrets/py-distributed"
# The last exit code that ends a job rather than restart a pod (IsRetryableExitCode: >= 128).
_LAST_FINAL_EXIT = 127
# An indented list of numbers: a line ends at its bracket, which no JSON string holds.
_NUMBERS = re.compile(r"\[\n[\d,\s]+\]")


@dataclass(frozen=True)
class Job:
    """What both manifests say; `kubernetes.checked_job` makes one of a target's checked values."""

    name: str  # metadata.name of both objects
    image: str
    command: str  # the binary's path inside the image
    nodes: int  # pods
    nnodes: str  # PET_NNODES: the binary's nnodes, else `nodes`
    nproc_per_node: str
    max_restarts: int
    resources: Mapping[str, str]  # requests; limits too, for all but cpu


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
        "env": [
            *env,
            _field("PET_LOCAL_ADDR", "status.podIP"),
            {"name": FILE_ENV, "value": f"{_SECRET_DIR}/{SECRET_KEY}"},
        ],
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "job-secret", "mountPath": _SECRET_DIR, "readOnly": True},
        ],
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
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {
                "name": "job-secret",
                "secret": {"secretName": secret_name(job), "defaultMode": 0o400},
            },
        ],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {"spec": spec}


def secret_name(job: Job) -> str:
    """The Secret the pods read the job's secret from, under the key SECRET_KEY."""
    return f"{job.name}-job-secret"


def network_policy(job: Job, label: str) -> Manifest:
    """Lets only the pods whose `label` is the job's name reach them, on every port."""
    pods = {"matchLabels": {label: job.name}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": job.name},
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": pods}]}],
        },
    }


def _field(name: str, path: str) -> Manifest:
    """A variable from the pod's own fields (the downward API)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def dumps(*manifests: Manifest) -> str:
    """`manifests` as YAML documents of indented JSON, each list of numbers (the exit codes) on
    one line."""
    texts = [json.dumps(manifest, indent=2) for manifest in manifests]
    text = "\n---\n".join(texts)
    return _NUMBERS.sub(lambda numbers: json.dumps(json.loads(numbers[0])), text) + "\n"
