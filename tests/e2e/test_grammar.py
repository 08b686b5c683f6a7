"""One grammar per value: a BUILD attribute and its PET_* variable get the same verdict and message.

Each case goes through the BUILD path (real Bazel: the build action runs the runtime's checker) and
the run-time path (the PET_* variable through the same checks the launcher makes before any worker
starts), and the two must agree.
"""

import re

import pytest
from harness.bazel import run, scratch_workspace

from py_distributed.cluster import single_machine
from py_distributed.errors import UsageError
from py_distributed.settings import checks, gpus, sources

# (attribute, as written in BUILD, the PET_* value meaning the same, the fix if it is refused)
CASES = [
    ("nproc_per_node", "0", "0", "use an int in 1..1024 or one of auto, cpu, gpu, xpu"),
    ("nproc_per_node", '"abc"', "abc", "use an int in 1..1024"),
    ("nproc_per_node", "1025", "1025", "use an int in 1..1024"),
    ("nproc_per_node", '"gpu"', "gpu", None),
    ("nproc_per_node", "4", "4", None),
    ("nnodes", '"3:1"', "3:1", 'use N or "MIN:MAX" with 0 < MIN <= MAX'),
    ("nnodes", '"1:4"', "1:4", None),
    ("max_restarts", "-1", "-1", "use an int >= 0"),
    ("max_restarts", "3", "3", None),
    ("rdzv_backend", '"zk"', "zk", "use one of c10d, etcd, etcd-v2, static"),
    ("rdzv_backend", '"etcd-v2"', "etcd-v2", None),
    ("rdzv_endpoint", '"node]:29400"', "node]:29400", "use HOST, HOST:PORT or [IPv6]:PORT"),
    ("rdzv_endpoint", '"h:70000"', "h:70000", "with PORT in 1..65535"),
    ("rdzv_endpoint", '"h:"', "h:", "use HOST, HOST:PORT"),
    ("rdzv_endpoint", '"[zz]:1"', "[zz]:1", "use HOST, HOST:PORT"),
    ("rdzv_endpoint", '"[::1]:29400"', "[::1]:29400", None),
    ("rdzv_endpoint", '"node-1.example:29400"', "node-1.example:29400", None),
    ("rdzv_conf", '{"timeout": "1,2"}', "timeout=1,2", "use KEY=VALUE pairs separated by commas"),
    ("rdzv_conf", '{"join-timeout": "1"}', "join-timeout=1", "use KEY=VALUE pairs"),
    ("rdzv_conf", '{"join_timeout": "0"}', "join_timeout=0", "use a positive number"),
    ("rdzv_conf", '{"store_type": "a=b"}', "store_type=a=b", None),
    ("rdzv_conf", '{"join_timeout": 600}', "join_timeout=600", None),
    # This project's own setting, with its own variable.
    ("gpus", "-1", "-1", "use an int in 0..1024"),
    ("gpus", "2", "2", None),
]
# Each attribute's run-time variable: torchrun's PET_<NAME>, but for this project's settings.
VARIABLES = {"gpus": gpus.GPUS_ENV}


def variable_of(attribute: str) -> str:
    return VARIABLES.get(attribute, f"PET_{attribute.upper()}")


JOB = """
load("@rules_py_distributed//rules:defs.bzl", "py_distributed_binary")

py_distributed_binary(
    name = "job",
    srcs = ["job.py"],
    {attribute} = {value},
)
"""


def run_time_verdict(attribute: str, value: str) -> str | None:
    """The launcher's check of the attribute's variable set to value: None, or its message."""
    environ = {variable_of(attribute): value}
    try:
        if attribute in VARIABLES:
            gpus.count("", "BUILD", environ)
        else:
            checks.check(sources.given({}, "BUILD", environ, single_machine()), [])
    except UsageError as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def build_verdicts(tmp_path_factory):
    """Builds one package per case in a scratch workspace; the checker's line per failed case."""
    packages = {
        f"case{i}": JOB.format(attribute=a, value=v) for i, (a, v, _, _) in enumerate(CASES)
    }
    path = scratch_workspace(tmp_path_factory.mktemp("grammar"), packages)
    for package in packages:
        (path / package / "job.py").write_text("")
    try:
        done = run(["bazel", "build", "--keep_going", "//..."], cwd=path)
    finally:
        run(["bazel", "shutdown"], cwd=path)
    lines = re.findall(r"^//(case\d+):job: error: (.*)$", done.stdout, re.M)
    return dict(lines), done.stdout


@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(CASES)), ids=[f"{a}={v}" for a, _, v, _ in CASES]
)
def test_build_and_run_time_give_one_verdict_and_message(build_verdicts, index, case):
    attribute, _, pet_value, fix = case
    built, log = build_verdicts
    at_build = built.get(f"case{index}")
    at_run_time = run_time_verdict(attribute, pet_value)
    if fix is None:
        assert at_build is None and at_run_time is None, (at_build, at_run_time)
        return
    assert at_run_time is not None and fix in at_run_time, at_run_time
    assert at_build is not None, log
    variable = variable_of(attribute)
    assert at_build.replace("(from BUILD)", f"(from {variable})") == at_run_time
