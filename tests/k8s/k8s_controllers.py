"""What the controllers and the kubelet make of a manifest: each pod's host name and environment,
and what follows when a pod fails.

Written from their source, not copied, so that tests can feed our cluster discovery the very
variables a real cluster gives each pod:
- JobSet (kubernetes-sigs/jobset, pkg/controllers/jobset_controller.go): a Job per replicated job
  and index, `<jobset>-<replicatedJob>-<index>` (placement.GenJobName, constructJob); its pods get
  the label `jobset.sigs.k8s.io/jobset-name` (labelAndAnnotateObject) and, with enableDNSHostnames
  (pkg/webhooks/jobset_webhook.go defaults it to true), the subdomain `spec.network.subdomain`, else
  the JobSet's name (GetSubdomain), whose headless service JobSet creates
  (createHeadlessSvcIfNecessary). JobSet sets no environment variable.
- The Job controller (kubernetes, pkg/controller/job/job_controller.go and indexed_job_utils.go): in
  an Indexed Job, pod i gets the annotation `batch.kubernetes.io/job-completion-index: i`, the host
  name `<job>-<i>`, and JOB_COMPLETION_INDEX from that annotation, appended to each container's
  variables unless it sets one itself (addCompletionIndexEnvVariable).
- PyTorchJob (kubeflow/training-operator, release-1.9, the last v1 release): defaults
  (pkg/apis/kubeflow.org/v1/pytorch_defaults.go: nprocPerNode "auto", port `pytorchjob-port` 23456),
  pods `<job>-<master|worker>-<i>` (envvar.go replicaName), labelled with the job's name and the
  pod's role (JobNameLabel, JobRoleLabel), each behind a headless service of its
  own name (pkg/controller.v1/common/service.go), and after the container's own variables
  (envvar.go setPodEnv, master.go): PYTHONUNBUFFERED, MASTER_PORT, PET_MASTER_PORT, MASTER_ADDR and
  PET_MASTER_ADDR (the master's name), WORLD_SIZE (pods x nprocPerNode, or pods where that is no
  int), RANK and PET_NODE_RANK (master 0, worker i: i+1), PET_NPROC_PER_NODE, PET_NNODES (pods).
- The kubelet (kubernetes, pkg/kubelet/kubelet_pods.go makeEnvironmentVariables): variables in
  order, `$(NAME)` expanded from those before it and `$$` to `$`
  (third_party/forked/golang/expansion), fieldRef from the pod's own fields, a later variable of a
  name over an earlier one.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# training-operator's labels of a PyTorchJob's pods (pkg/apis/kubeflow.org/v1/common_types.go).
JOB_NAME_LABEL, JOB_ROLE_LABEL = "training.kubeflow.org/job-name", "training.kubeflow.org/job-role"
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


@dataclass(frozen=True)
class Pod:
    """One pod as its container sees it."""

    hostname: str
    subdomain: str  # "" where none
    node_rank: int  # the node it is, as its controller numbers them
    env: dict[str, str]
    labels: dict[str, str]  # those its controller sets

    @property
    def dns_name(self) -> str:
        """The name other pods reach it at."""
        return f"{self.hostname}.{self.subdomain}" if self.subdomain else self.hostname


def jobset_pods(jobset: Manifest, pod_ip: str) -> list[Pod]:
    name, spec = jobset["metadata"]["name"], jobset["spec"]
    network = spec.get("network", {})
    subdomain = network.get("subdomain") or name if network.get("enableDNSHostnames", True) else ""
    pods = []
    for replicated in spec["replicatedJobs"]:
        for job_index in range(replicated.get("replicas", 1)):
            job_name = f"{name}-{replicated['name']}-{job_index}"
            job = replicated["template"]["spec"]
            assert job["completionMode"] == "Indexed"
            for index in range(job["completions"]):
                labels = {"jobset.sigs.k8s.io/jobset-name": name}
                (container,) = job["template"]["spec"]["containers"]
                variables = list(container.get("env", []))
                if all(v["name"] != "JOB_COMPLETION_INDEX" for v in variables):
                    field = f"metadata.annotations['{COMPLETION_INDEX}']"
                    variables.append(_field_variable("JOB_COMPLETION_INDEX", field))
                fields = {"labels": labels, "annotations": {COMPLETION_INDEX: str(index)}}
                env = container_env(variables, fields, pod_ip)
                pods.append(Pod(f"{job_name}-{index}", subdomain, index, env, labels))
    return pods


def pytorchjob_pods(pytorchjob: Manifest, pod_ip: str) -> list[Pod]:
    name, spec = pytorchjob["metadata"]["name"], pytorchjob["spec"]
    assert "elasticPolicy" not in spec, "modelled without an elastic policy"
    replicas = spec["pytorchReplicaSpecs"]
    total = sum(r.get("replicas", 1) for r in replicas.values())
    nproc = spec.get("nprocPerNode", "auto")
    master = replicas["Master"]["template"]["spec"]["containers"]
    port = next(
        p["containerPort"]
        for c in master
        if c["name"] == "pytorch"
        for p in c.get("ports", [{"name": "pytorchjob-port", "containerPort": 23456}])
        if p["name"] == "pytorchjob-port"
    )
    master_addr = f"{name}-master-0"
    pods = []
    for role, replica in replicas.items():
        for index in range(replica.get("replicas", 1)):
            rank = index + 1 if role == "Worker" else index
            injected = {
                "PYTHONUNBUFFERED": "1",
                "MASTER_PORT": str(port),
                "PET_MASTER_PORT": str(port),
                "MASTER_ADDR": master_addr,
                "PET_MASTER_ADDR": master_addr,
                "WORLD_SIZE": str(total * (int(nproc) if nproc.isdecimal() else 1)),
                "RANK": str(rank),
                "PET_NODE_RANK": str(rank),
                "PET_NPROC_PER_NODE": nproc,
                "PET_NNODES": str(total),
            }
            (container,) = replica["template"]["spec"]["containers"]
            variables = [*container.get("env", []), *_values(injected)]
            env = container_env(variables, {"labels": {}, "annotations": {}}, pod_ip)
            labels = {JOB_NAME_LABEL: name, JOB_ROLE_LABEL: role.lower()}
            pods.append(Pod(f"{name}-{role.lower()}-{index}", "", rank, env, labels))
    return pods


def container_env(
    variables: list[Manifest], fields: Mapping[str, Mapping[str, str]], pod_ip: str
) -> dict[str, str]:
    """The container's variables as the kubelet resolves them."""
    env: dict[str, str] = {}
    for variable in variables:
        if "valueFrom" in variable:
            env[variable["name"]] = _field_value(
                variable["valueFrom"]["fieldRef"]["fieldPath"], fields, pod_ip
            )
        else:
            env[variable["name"]] = _REFERENCE.sub(
                lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), variable.get("value", "")
            )
    return env


def _field_value(path: str, fields: Mapping[str, Mapping[str, str]], pod_ip: str) -> str:
    if path == "status.podIP":
        return pod_ip
    match = _FIELD.fullmatch(path)
    assert match, f"not modelled: fieldRef {path}"
    return fields[match[1]].get(match[2], "")


def _field_variable(name: str, path: str) -> Manifest:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _values(values: Mapping[str, str]) -> list[Manifest]:
    return [{"name": name, "value": value} for name, value in values.items()]


def jobset_after_pod_failure(
    jobset: Manifest, exit_code: int | None, *, disrupted: bool = False, restarts: int = 0
) -> str:
    """ "restart" (every Job anew) or "fail": what a JobSet that has restarted `restarts` times does
    when a pod of its Job fails with `exit_code` (None: no code, its node lost), or `disrupted`
    (evicted, preempted: the DisruptionTarget condition).

    The Job controller (kubernetes, pkg/controller/job/pod_failure_policy.go) takes the first rule
    of the pod failure policy that matches the pod: FailJob fails the Job with reason
    PodFailurePolicy; Count, or no rule, counts the pod against backoffLimit, past which the Job
    fails with reason BackoffLimitExceeded. JobSet (pkg/controllers/failure_policy.go) takes the
    first of its rules whose reasons name the Job's, else RestartJobSet, which restarts while
    `restarts` < maxRestarts and fails after.
    """
    (replicated,) = jobset["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    action = "Count"
    for rule in job.get("podFailurePolicy", {}).get("rules", []):
        codes = rule.get("onExitCodes")
        conditions = rule.get("onPodConditions", [])
        if codes:
            assert codes["operator"] == "In", "modelled: In"
            matches = exit_code in codes["values"] and codes["containerName"] == container["name"]
        else:
            matches = disrupted and any(c["type"] == "DisruptionTarget" for c in conditions)
        if matches:
            action = rule["action"]
            break
    assert action in ("Count", "FailJob") and job["backoffLimit"] == 0, "modelled: one pod fails it"
    reason = "PodFailurePolicy" if action == "FailJob" else "BackoffLimitExceeded"
    policy = jobset["spec"].get("failurePolicy", {})
    jobset_action = next(
        (
            rule["action"]
            for rule in policy.get("rules", [])
            if reason in (rule.get("onJobFailureReasons") or [reason])
        ),
        "RestartJobSet",
    )
    if jobset_action == "RestartJobSet" and restarts < policy.get("maxRestarts", 0):
        return "restart"
    assert jobset_action in ("RestartJobSet", "FailJobSet"), f"not modelled: {jobset_action}"
    return "fail"


def pytorchjob_after_pod_failure(
    pytorchjob: Manifest, exit_code: int | None, *, restarts: int = 0
) -> str:
    """ "restart" (that pod anew) or "fail": what a PyTorchJob whose pods have been restarted
    `restarts` times does when one exits with `exit_code`.

    training-operator (release-1.9, pkg/controller.v1/common/pod.go ReconcilePods, job.go
    ReconcileJobs): under restartPolicy ExitCode, a code >= 128 (IsRetryableExitCode) deletes the
    pod for a new one, any other fails the job; a failure past runPolicy.backoffLimit fails it too.
    A failed pod without an exit code (None: its node lost) reads as 0xbeef, "magic number".
    """
    spec = pytorchjob["spec"]
    policies = {r["restartPolicy"] for r in spec["pytorchReplicaSpecs"].values()}
    assert policies == {"ExitCode"}, "modelled: ExitCode"
    if (0xBEEF if exit_code is None else exit_code) < 128:
        return "fail"
    return "restart" if restarts + 1 <= spec["runPolicy"].get("backoffLimit", 6) else "fail"
