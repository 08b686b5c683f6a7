"""Nobody off the job joins it (docs/security.md): two hosts run a job with a secret while a third,
the attacker, on the same bridge, reads the chief's store, forges the rendezvous state and starts
agents of its own. The whole scene runs once; each test asserts one outcome of it."""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import netns
from harness.bazel import wait_for
from harness.netns import tf_config

from py_distributed.settings.job_secret import JobSecret

STEPS = "tests/e2e/steps"  # a job of steps, nproc 2 (tests/multinode/test_faults.py)
ATTACK = Path(__file__).with_name("attack.py")
PORT = 29511  # tf_config's
PUBLIC_ID = "secure-job"
SECRET = "f0c1e5" * 8
SECRET_FILE = "PY_DISTRIBUTED_JOB_SECRET_FILE"


class Scene:
    """What happened, for the tests to read."""

    def __init__(self, hosts, tmp):
        self.hosts, self.tmp = hosts, tmp
        self.pwned = tmp / "pwned"  # created by whoever unpickles the forged state
        self.logs = [tmp / f"host{i}.log" for i in range(3)]
        self.listening = {}  # host index -> "ADDRESS:PORT" of every listening TCP socket
        self.ends = {}  # host index -> exit code
        self.stolen = b""  # the state as the attacker read it


def listeners(host):
    """Every listening TCP socket in `host`: the job's processes are all that live there."""
    out = subprocess.run(
        ["ip", "netns", "exec", host.netns, "ss", "-ltnH"], capture_output=True, text=True
    ).stdout
    return sorted({line.split()[3] for line in out.splitlines()})


def attack(host, *args):
    argv = ["ip", "netns", "exec", host.netns, sys.executable, str(ATTACK), *args]
    return subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout


@pytest.fixture(scope="module")
def scene(built, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    probe_dir = tmp / "probe"
    probe_dir.mkdir()
    secret_file = tmp / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    with netns.hosts(3) as hosts:
        chief, _, attacker = hosts
        spare = chief.address.rpartition(".")[0] + ".200"  # the chief's other address
        netns.ip("-n", chief.netns, "addr", "add", f"{spare}/24", "dev", "eth0")
        scene = Scene(hosts, tmp)
        scene.spare = spare
        env = {
            **os.environ,
            "PROBE_DIR": str(probe_dir),
            "PROBE_STEPS": "80",
            "PET_NNODES": "2:3",  # a third node would be let in, were it the job's
            "PET_RDZV_ID": PUBLIC_ID,
        }
        job = [
            h.popen(
                [str(built / STEPS)],
                {**env, "TF_CONFIG": tf_config(hosts[:2], i), SECRET_FILE: str(secret_file)},
                scene.logs[i],
            )
            for i, h in enumerate(hosts[:2])
        ]
        intruders = []
        try:
            checkpoint = probe_dir / "checkpoint.json"
            assert wait_for(
                lambda: checkpoint.is_file() and json.loads(checkpoint.read_text())["step"] >= 2,
                timeout=120,
            ), [log.read_text() for log in scene.logs[:2]]
            scene.listening = {i: listeners(h) for i, h in enumerate(hosts[:2])}
            run_id = JobSecret(SECRET.encode()).run_id(PUBLIC_ID)
            scene.stolen = attack(attacker, "read", chief.address, str(PORT), run_id)
            # Two agents of the attacker's, without the secret: under the job's public run id,
            # and under the one its keys are named after. They end before the forgery, which would
            # run in an agent without the secret: on the attacker's own host, the file appearing.
            for i, rdzv_id in enumerate((PUBLIC_ID, run_id)):
                intruder = {**env, "TF_CONFIG": tf_config(hosts, 2), "PET_RDZV_ID": rdzv_id}
                intruders.append(attacker.popen([str(built / STEPS)], intruder, tmp / f"in{i}.log"))
            for proc in intruders:
                proc.wait(timeout=60)
            attack(attacker, "forge", chief.address, str(PORT), run_id, str(scene.pwned))
            for i, proc in enumerate([*job, *intruders]):
                proc.wait(timeout=60)
                scene.ends[i] = proc.returncode
        finally:
            for proc in [*job, *intruders]:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        scene.starts = [json.loads(p.read_text()) for p in probe_dir.glob("start-*.json")]
        scene.left = wait_for(lambda: not any(h.pids() for h in hosts), timeout=15)
        yield scene


def output(scene, index):
    return scene.logs[index].read_text()


def intruder_output(scene, index):
    return (scene.tmp / f"in{index}.log").read_text()


def test_every_listener_of_a_node_is_on_its_node_address_alone(scene):
    for index, host in enumerate(scene.hosts[:2]):
        listening = scene.listening[index]
        assert listening, index
        # Not 0.0.0.0, [::], loopback, or the chief's other address.
        assert {address.rpartition(":")[0] for address in listening} == {host.address}, listening
    assert f"{scene.hosts[0].address}:{PORT}" in scene.listening[0]


def test_a_forged_rendezvous_state_is_never_unpickled_and_the_job_finishes(scene):
    assert scene.ends[0] == scene.ends[1] == 0, (output(scene, 0), output(scene, 1))
    assert not scene.pwned.exists()
    refused = re.compile(
        r"refused a rendezvous state not signed with the job's secret.*never unpickled"
    )
    assert any(refused.search(output(scene, i)) for i in range(2)), output(scene, 0)
    assert scene.left, "processes left"


def test_an_agent_without_the_secret_is_refused_and_costs_the_job_no_restart(scene):
    for index, why in enumerate(("signed with a secret this node does not have",) * 2):
        out = intruder_output(scene, index)
        assert scene.ends[2 + index] == 1, out
        assert re.search(rf"error: rendezvous \S+ at \S+: the job's rendezvous is {why}", out), out
    # Each of the job's 4 ranks started once: no round was added for the intruders.
    assert sorted(s["rank"] for s in scene.starts) == [0, 1, 2, 3], scene.starts
    assert scene.ends[0] == scene.ends[1] == 0


def test_the_rendezvous_state_reveals_no_secret(scene):
    assert scene.stolen  # the state was there to read
    for form in (SECRET.encode(), bytes.fromhex(SECRET), SECRET.upper().encode()):
        assert form not in scene.stolen
        assert form not in base64.b64decode(scene.stolen)
