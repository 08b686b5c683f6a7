"""The project's distributed tests on a real remote-execution (REAPI) service: BuildGrid with its
scheduler on PostgreSQL and our Bots-API worker (buildgrid_service.py), all on loopback.

One `bazel test --config=rbe` runs them all; the worker's journal and the scheduler's database,
not Bazel's summary, prove that each test action ran on the worker and was not served from a cache.
"""

import collections
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import buildgrid_service
import pytest
import torch
from harness.bazel import ROOT, bazel, run

# The distributed tests of the project, the failing-on-purpose (manual) ones left out.
QUERY = (
    "tests(attr(generator_function, py_distributed_test, //...)) except attr(tags, manual, //...)"
)
# A plain py_test that starts a py_distributed_binary, as users' tests do.
ALSO = ["//tests/e2e:sandbox_test"]
TEST_SETUP = "external/bazel_tools/tools/test/test-setup.sh"  # argv[0] of Bazel's test actions


@pytest.fixture(scope="module")
def service():
    """The service and its worker; afterwards, none of their processes and no directory is left."""
    workdir = Path(tempfile.mkdtemp(prefix="tests-rbe-"))
    try:
        with buildgrid_service.running(workdir) as running:
            yield running
    finally:
        shutil.rmtree(workdir)


@dataclass(frozen=True)
class Run:
    targets: list[str]
    actions: list[dict]  # the worker's journal: every action it ran
    tests: dict[str, list[dict]]  # test target -> the journal entries of its test actions


@pytest.fixture(scope="module")
def remote_run(service) -> Run:
    query = bazel("query", QUERY)
    assert query.returncode == 0, query.stdout
    targets = sorted(
        {line for line in query.stdout.splitlines() if line.startswith("//")} | {*ALSO}
    )
    remote = f"--remote_executor={service.remote}"
    done = run(["bazel", "test", "--config=rbe", remote, *targets], timeout=600)
    assert done.returncode == 0, done.stdout
    actions = service.actions()
    tests = collections.defaultdict(list)
    for action in actions:
        if action["argv"][0] == TEST_SETUP:
            tests[action["environment"]["TEST_TARGET"]].append(action)
    return Run(targets, actions, dict(tests))


def test_every_distributed_test_ran_once_on_the_worker_and_passed(remote_run):
    assert {"//train:model_test", "//train:ddp_step_test", "//tests/rbe:pool_test"} <= set(
        remote_run.targets
    )
    assert {
        target: [a["exit_code"] for a in runs] for target, runs in remote_run.tests.items()
    } == {target: [0] for target in remote_run.targets}


def test_the_service_scheduled_and_completed_every_action_the_worker_ran(service, remote_run):
    # jobs: one row per action the scheduler handed to a worker; stage 4 is COMPLETED, status 0 OK.
    jobs = {
        name: (digest, stage, status)
        for name, digest, stage, status in service.query(
            "SELECT name, action_digest, stage, status_code FROM jobs"
        )
    }
    ran = {a["lease"].rpartition("/")[2]: a["action_digest"] for a in remote_run.actions}
    assert jobs == {name: (digest, "4", "0") for name, digest in ran.items()}


def test_model_test_returns_its_checkpoint_from_the_worker(remote_run, tmp_path):
    (training,) = remote_run.tests["//train:model_test"]
    assert training["argv"][1:] == ["train/model_test", "--epochs=2"]
    outputs = "bazel-out/k8-fastbuild/testlogs/train/model_test/test.outputs/outputs.zip"
    assert outputs in training["output_files"]
    with zipfile.ZipFile(ROOT / "bazel-testlogs/train/model_test/test.outputs/outputs.zip") as z:
        z.extract("train_output/model.pt", tmp_path)
    checkpoint = torch.load(tmp_path / "train_output/model.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert all(isinstance(t, torch.Tensor) for t in checkpoint["model"].values()), checkpoint


def test_exec_properties_reach_the_worker(remote_run):
    platforms = {target: runs[0]["platform"] for target, runs in remote_run.tests.items()}
    pooled = {"//tests/rbe:pool_test": dict([buildgrid_service.POOL])}
    assert platforms == {target: pooled.get(target, {}) for target in remote_run.targets}
