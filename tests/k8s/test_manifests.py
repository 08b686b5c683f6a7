"""The JobSet and PyTorchJob of a `.k8s` target: valid Kubernetes pods, and on every pod, what the
controllers inject gives our cluster discovery the right node, node count and rendezvous."""

import copy
import json

import pytest
from k8s_controllers import (
    jobset_after_pod_failure,
    jobset_pods,
    pytorchjob_after_pod_failure,
    pytorchjob_pods,
)
from kubernetes.client import ApiClient

from py_distributed import grammar
from py_distributed.cluster import DEFAULT_PORT, machine_from_env
from py_distributed.errors import EXIT_USAGE, UsageError
from py_distributed.settings import config, job_secret, node_address
from py_distributed.settings.build import BuildSettings, write
from py_distributed.submit import kubernetes, kubernetes_manifests

# Every pod's IP in these tests: node_address checks that this machine holds it.
POD_IP = "127.0.0.1"

# (BUILD settings of the binary, the .k8s target's own) -> pods.
JOBS = {
    "one node": ({"nproc_per_node": "2"}, {}),
    "k8s_nodes": ({"nproc_per_node": "2", "max_restarts": 1}, {"nodes": 3}),
    "nnodes": ({"nproc_per_node": "auto", "nnodes": "4"}, {}),
    "elastic on GPUs": (
        {"nproc_per_node": "gpu", "nnodes": "2:4", "max_restarts": 2},
        {"nodes": 3, "resources": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}},
    ),
}


def make_job(build, target):
    return kubernetes.checked_job(
        binary="model", package="train", image="registry.example/model:1", **build, **target
    )


def explicit(build):
    """What the binary's settings file holds as BUILD values (settings/build_check.py)."""
    return {k: str(v) for k, v in {"rdzv_backend": "c10d", "max_restarts": 0, **build}.items()}


def round_trip(manifest, model):
    """`manifest` loaded into the official client's `model` and written back."""
    client = ApiClient()
    return client.sanitize_for_serialization(client.deserialize(json.dumps(manifest), model, None))


def pod_templates(job):
    """Each manifest's pod templates, with the client model each is."""
    js, ptj = kubernetes_manifests.jobset(job), kubernetes_manifests.pytorchjob(job)
    yield from ((r["template"], "V1JobTemplateSpec") for r in js["spec"]["replicatedJobs"])
    yield from (
        (r["template"], "V1PodTemplateSpec") for r in ptj["spec"]["pytorchReplicaSpecs"].values()
    )


@pytest.mark.parametrize(("build", "target"), JOBS.values(), ids=JOBS)
def test_every_pod_template_loads_into_the_kubernetes_client_without_loss(build, target):
    for template, model in pod_templates(make_job(build, target)):
        assert round_trip(template, model) == template


def test_the_round_trip_finds_a_field_the_client_does_not_know():
    manifest = kubernetes_manifests.pytorchjob(make_job(*JOBS["one node"]))
    template = manifest["spec"]["pytorchReplicaSpecs"]
    wrong = copy.deepcopy(template["Master"]["template"])
    wrong["spec"]["containers"][0]["volumeMount"] = wrong["spec"]["containers"][0]["volumeMounts"]
    assert round_trip(wrong, "V1PodTemplateSpec") != wrong


def launch_view(pod, build):
    """What the launcher decides on `pod`: its cluster, torchrun settings and address."""
    cluster = machine_from_env(pod.env)
    resolved = config.resolve(explicit(build), "BUILD", [], pod.env, cluster)
    return cluster, node_address.pinned(resolved, cluster, pod.env)


def check_nodes(pods, chief_name, build, nodes, nnodes):
    """Every pod is one node of `nodes`; node 0 is the chief and hosts the rendezvous on localhost,
    the others reach it at `chief_name`, the chief pod's own name."""
    assert [pod.node_rank for pod in pods] == list(range(nodes))
    assert pods[0].dns_name == chief_name
    run_ids = set()
    for pod in pods:
        cluster, resolved = launch_view(pod, build)
        assert (cluster.source, cluster.node_rank) == ("Kubernetes", pod.node_rank)
        assert (resolved.min_nodes, resolved.max_nodes) == grammar.nnodes(nnodes)
        assert resolved.nproc_per_node == build["nproc_per_node"]
        assert resolved.max_restarts == build.get("max_restarts", 0)
        assert resolved.local_addr == POD_IP
        if resolved.max_nodes == 1:
            assert resolved.standalone
            continue
        host = "localhost" if pod.node_rank == 0 else chief_name
        assert resolved.rdzv_endpoint == f"{host}:{DEFAULT_PORT}"
        run_ids.add(resolved.rdzv_id)
    assert len(run_ids) <= 1


@pytest.mark.parametrize(("build", "target"), JOBS.values(), ids=JOBS)
def test_jobset_pods_find_their_node_and_the_chief(build, target):
    job = make_job(build, target)
    pods = jobset_pods(kubernetes_manifests.jobset(job), POD_IP)
    assert len(pods) == job.nodes
    # The JobSet's headless service names node 0 <jobset>-node-0-0.<jobset>.
    check_nodes(pods, "model-node-0-0.model", build, job.nodes, build.get("nnodes", str(job.nodes)))


@pytest.mark.parametrize(("build", "target"), JOBS.values(), ids=JOBS)
def test_pytorchjob_pods_find_their_node_and_the_master(build, target):
    job = make_job(build, target)
    pods = pytorchjob_pods(kubernetes_manifests.pytorchjob(job), POD_IP)
    # The operator sets PET_NNODES to the number of pods: a fixed count, even for an nnodes range.
    check_nodes(pods, "model-master-0", build, job.nodes, str(job.nodes))


def test_a_renamed_jobset_still_finds_its_chief():
    manifest = kubernetes_manifests.jobset(make_job(*JOBS["k8s_nodes"]))
    manifest["metadata"]["name"] = "model-run-7"
    pods = jobset_pods(manifest, POD_IP)
    check_nodes(pods, "model-run-7-node-0-0.model-run-7", JOBS["k8s_nodes"][0], 3, "3")


# A rank failed and torchrun gave up (1..127, 2 for bad input); a pod killed by the kernel's OOM
# killer (137) or SIGTERMed on eviction (143); a pod lost with its node, with no exit code.
FINAL, KILLED = (1, 2, 7, 127), (128, 137, 143, 255, None)


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_a_jobset_restarts_every_node_after_a_pod_is_killed_up_to_max_restarts(max_restarts):
    manifest = kubernetes_manifests.jobset(make_job({"max_restarts": max_restarts}, {"nodes": 3}))
    for code in KILLED:
        outcomes = [
            jobset_after_pod_failure(manifest, code, restarts=n) for n in range(max_restarts + 1)
        ]
        assert outcomes == ["restart"] * max_restarts + ["fail"]
    # Evicted or preempted, whatever the launcher made of the SIGTERM.
    assert jobset_after_pod_failure(manifest, 1, disrupted=True) == outcomes[0]


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_a_jobset_ends_when_a_launcher_gives_up(max_restarts):
    manifest = kubernetes_manifests.jobset(make_job({"max_restarts": max_restarts}, {"nodes": 3}))
    assert {jobset_after_pod_failure(manifest, code) for code in FINAL} == {"fail"}


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_a_pytorchjob_restarts_a_killed_pod_up_to_max_restarts_and_ends_when_a_launcher_gives_up(
    max_restarts,
):
    manifest = kubernetes_manifests.pytorchjob(
        make_job({"max_restarts": max_restarts}, {"nodes": 3})
    )
    for code in KILLED:
        outcomes = [
            pytorchjob_after_pod_failure(manifest, code, restarts=n)
            for n in range(max_restarts + 1)
        ]
        assert outcomes == ["restart"] * max_restarts + ["fail"]
    assert {pytorchjob_after_pod_failure(manifest, code) for code in FINAL} == {"fail"}


def test_pods_get_resources_shared_memory_and_the_binary_as_command():
    job = make_job(*JOBS["elastic on GPUs"])
    for template, _ in pod_templates(job):
        pod = (
            template["spec"]["template"]["spec"]
            if "template" in template["spec"]
            else template["spec"]
        )
        (container,) = pod["containers"]
        assert container["command"] == ["/app/train/model"]
        assert container["resources"] == {
            "requests": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"},
            "limits": {"memory": "256Gi", "nvidia.com/gpu": "8"},
        }
        volume = next(v for v in pod["volumes"] if "emptyDir" in v)
        assert volume["emptyDir"] == {"medium": "Memory"}
        assert {"name": volume["name"], "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_pods_read_the_job_secret_from_the_jobs_secret_as_a_file_of_their_user_alone():
    job = make_job(*JOBS["k8s_nodes"])
    for template, _ in pod_templates(job):
        spec = template["spec"]
        pod = spec["template"]["spec"] if "template" in spec else spec
        (container,) = pod["containers"]
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"] == {"secretName": "model-job-secret", "defaultMode": 0o400}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"]
        (path,) = [v["value"] for v in container["env"] if v["name"] == job_secret.FILE_ENV]
        assert path == f"{mount['mountPath']}/{kubernetes_manifests.SECRET_KEY}"


@pytest.mark.parametrize(
    ("make", "pods", "label"),
    [
        (kubernetes_manifests.jobset, jobset_pods, kubernetes_manifests.JOBSET_NAME_LABEL),
        (
            kubernetes_manifests.pytorchjob,
            pytorchjob_pods,
            kubernetes_manifests.PYTORCHJOB_NAME_LABEL,
        ),
    ],
)
def test_the_network_policy_lets_the_jobs_pods_alone_reach_them_on_every_port(make, pods, label):
    job = make_job(*JOBS["k8s_nodes"])
    policy = kubernetes_manifests.network_policy(job, label)
    assert round_trip(policy, "V1NetworkPolicy") == policy
    spec = policy["spec"]
    selected = spec["podSelector"]["matchLabels"]
    (rule,) = spec["ingress"]
    assert spec["policyTypes"] == ["Ingress"] and "ports" not in rule  # every port
    assert rule["from"] == [{"podSelector": {"matchLabels": selected}}]
    job_pods = pods(make(job), POD_IP)
    other = kubernetes.checked_job(binary="other", package="train", image="r/o:1", nodes=2)
    other_pods = pods(make(other), POD_IP)
    assert len(job_pods) == 3
    assert all(selected.items() <= pod.labels.items() for pod in job_pods)
    assert not any(selected.items() <= pod.labels.items() for pod in other_pods)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": ""}, "no container image: set k8s_image on the target, or build with"),
        ({"image": "a b"}, "k8s_image='a b': use an image reference"),
        ({"image_flag": "-x"}, "--@rules_py_distributed//rules:k8s_image='-x': use an image"),
        ({"binary_path": "app/model"}, "k8s_binary_path='app/model': use the binary's absolute"),
        ({"nnodes": "2", "nodes": 3}, "k8s_nodes=3 is outside nnodes='2'"),
        ({"nodes": -1}, "k8s_nodes=-1: use a number of nodes N > 0"),
        ({"nnodes": "3:2"}, "nnodes='3:2': use N or"),
        (
            {"binary": "Model!"},
            "target name 'Model!' makes pod host names such as 'model!-node-0-0'",
        ),
        ({"binary": "m" * 60}, "which Kubernetes refuses"),
        ({"resources": {"memory": "lots"}}, "k8s_resources has 'memory': 'lots': use Kubernetes"),
        ({"nproc_per_node": "gpu"}, "nproc_per_node='gpu' but k8s_resources asks for no GPU"),
    ],
)
def test_bad_values_are_one_line_naming_the_value_and_the_fix(change, message):
    values = {"binary": "model", "package": "train", "image": "r/m:1", **change}
    with pytest.raises(UsageError) as error:
        kubernetes.checked_job(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_generator_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    settings = tmp_path / "settings.json"
    write(str(settings), BuildSettings("//train:model", "_main/train/model", "m.py"))
    out = tmp_path / "out"
    out.mkdir()
    outputs = ["--jobset", str(out / "j.yaml"), "--pytorchjob", str(out / "p.yaml")]
    with pytest.raises(SystemExit) as exit_:
        kubernetes.main(["--target", "//train:model.k8s", "--settings", str(settings), *outputs])
    assert exit_.value.code == EXIT_USAGE
    assert capsys.readouterr().err.startswith("//train:model.k8s: error: no container image")
    assert list(out.iterdir()) == []
