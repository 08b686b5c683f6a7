"""`bazel build //pkg:name.k8s`: real Bazel writes the manifests the generator makes of the
target's attributes, with the image of the target or the flag, and builds none without one."""

import yaml
from harness.bazel import BIN, bazel
from k8s_controllers import jobset_pods

from py_distributed.submit import kubernetes, kubernetes_manifests

FLAG = "--//rules:k8s_image=registry.example/model:flag"


def load(path):
    """A file's manifests as kubectl reads them: YAML documents (of which our JSON is a part)."""
    assert path.is_file(), path
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def test_every_attribute_of_the_target_reaches_the_manifests():
    done = bazel("build", "//tests/k8s:gpu_job.k8s")
    assert done.returncode == 0, done.stdout
    # tests/k8s/BUILD.bazel's target, as the generator makes it.
    job = kubernetes.checked_job(
        binary="gpu_job",
        package="tests/k8s",
        image="registry.example/gpu-job:1",
        binary_path="/opt/gpu_job/bin/gpu_job",
        nodes=3,
        nnodes="2:4",
        nproc_per_node="gpu",
        max_restarts=2,
        resources={"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"},
    )
    manifests = kubernetes_manifests
    assert load(BIN / "tests/k8s/gpu_job.jobset.yaml") == [
        manifests.jobset(job),
        manifests.network_policy(job, manifests.JOBSET_NAME_LABEL),
    ]
    assert load(BIN / "tests/k8s/gpu_job.pytorchjob.yaml") == [
        manifests.pytorchjob(job),
        manifests.network_policy(job, manifests.PYTORCHJOB_NAME_LABEL),
    ]


def test_the_example_jobs_manifests_take_the_image_from_the_flag():
    done = bazel("build", "//train:model.k8s", FLAG)
    assert done.returncode == 0, done.stdout
    jobset, _ = load(BIN / "train/model.jobset.yaml")
    pytorchjob, _ = load(BIN / "train/model.pytorchjob.yaml")
    assert (jobset["kind"], pytorchjob["kind"]) == ("JobSet", "PyTorchJob")
    (pod,) = jobset_pods(jobset, "10.0.0.1")  # train/BUILD.bazel: one node of 2 workers
    assert pod.env["PET_NNODES"] == "1" and pytorchjob["spec"]["nprocPerNode"] == "2"
    for template in [
        jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"],
        pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"],
    ]:
        (container,) = template["spec"]["containers"]
        assert container["image"] == "registry.example/model:flag"
        assert container["command"] == ["/app/train/model"]


def test_without_an_image_the_build_fails_with_one_line_naming_the_fix():
    done = bazel("build", "//train:model.k8s")
    assert done.returncode != 0
    assert (
        "//train:model.k8s: error: no container image: set k8s_image on the target, or build with"
        " --@rules_py_distributed//rules:k8s_image=IMAGE\n"
    ) in done.stdout
