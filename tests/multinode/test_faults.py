"""Faults across simulated hosts (tests/harness/netns.py), three hosts of a job of steps
(tests/e2e/steps.py) whose rank 0 checkpoints: a lost node costs an elastic job one restart, and
ends a fixed one on every other node within a bound, the lost node named. Each case bounds its
waits, and the `cluster` fixture checks that no process is left on any host."""

import json
import os
import re
import signal
import time

import pytest
from harness import netns
from harness.bazel import wait_for
from harness.netns import tf_config

STEPS = "tests/e2e/steps"  # a job of steps that checkpoints and resumes, nproc 2


class Job:
    """The steps job, one launcher on each host, started at once."""

    def __init__(self, built, hosts, probe_dir, **env):
        base = {**os.environ, "PROBE_DIR": str(probe_dir), **env}
        self.hosts, self.probe_dir = hosts, probe_dir
        self.logs = [probe_dir.parent / f"host{i}.log" for i in range(len(hosts))]
        self.procs = [
            h.popen([str(built / STEPS)], {**base, "TF_CONFIG": tf_config(hosts, i)}, log)
            for i, (h, log) in enumerate(zip(hosts, self.logs, strict=True))
        ]

    def output(self, index):
        return self.logs[index].read_text()

    def at_step(self, step):
        """Waits until rank 0 has checkpointed `step`."""
        checkpoint = self.probe_dir / "checkpoint.json"
        assert wait_for(
            lambda: checkpoint.is_file() and json.loads(checkpoint.read_text())["step"] >= step,
            timeout=120,
        ), [self.output(i) for i in range(len(self.hosts))]

    def ended(self, indices, timeout):
        """Waits for the launchers of the hosts `indices`; returns {index: (exit code, seconds
        from the call to its end)}."""
        started, ends = time.monotonic(), {}
        while len(ends) < len(indices) and time.monotonic() - started < timeout:
            for i in indices:
                if i not in ends and self.procs[i].poll() is not None:
                    ends[i] = (self.procs[i].returncode, time.monotonic() - started)
            time.sleep(0.1)
        return ends

    def starts(self):
        return [json.loads(p.read_text()) for p in self.probe_dir.glob("start-*.json")]

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def job(request, built, cluster, probe_dir):
    """The steps job on the cluster, with the environment `request.param`."""
    started = Job(built, cluster, probe_dir, **request.param)
    yield started
    started.stop()


ELASTIC = {"PROBE_STEPS": "24", "PET_NNODES": "2:3", "PET_MAX_RESTARTS": "3"}


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize("job", [ELASTIC], indirect=True)
def test_an_elastic_job_that_loses_a_node_resumes_as_the_smaller_world(job, cluster, probe_dir):
    job.at_step(8)
    crashed = time.time()
    assert not netns.kill_all(cluster[2].netns)  # a crash: the node's launcher and workers at once
    ends = job.ended([0, 1], timeout=120)
    assert ends == {0: (0, ends[0][1]), 1: (0, ends[1][1])}, [job.output(i) for i in (0, 1)]
    resumed = sorted((s for s in job.starts() if s["time"] > crashed), key=lambda s: s["time"])
    # The survivors' 4 ranks, from the checkpoint, within 30 s of the crash.
    assert sorted(s["rank"] for s in resumed) == [0, 1, 2, 3], resumed
    assert {(s["world_size"], s["step"] >= 8) for s in resumed} == {(4, True)}, resumed
    assert resumed[-1]["time"] - crashed < 30, resumed
    done = [json.loads(p.read_text()) for p in sorted(probe_dir.glob("done-rank*.json"))]
    assert [(d["world_size"], d["step"]) for d in done] == [(4, 24)] * 4, done


# Three nodes of one rank each, no restarts: a lost node ends the job. Heartbeats every 3 s, so that
# a silent node is lost after 9 s, not torch's 15 (the bound is what the tests check).
FIXED = {
    "PROBE_STEPS": "400",
    "PET_NPROC_PER_NODE": "1",
    "PET_RDZV_CONF": "keep_alive_interval=3,keep_alive_max_attempt=3",
    "PET_SHUTDOWN_TIMEOUT": "1",  # a node waits for the others' first failures this and 2 s
}


def node_rank(job, index):
    """The node rank host `index` got in the round (with one rank a node, also its rank)."""
    (rank,) = {s["group_rank"] for s in job.starts() if s["launcher_pid"] == job.procs[index].pid}
    return rank


def lost_line(job, index):
    """How the others name host `index`'s node: address, node rank and ranks."""
    rank = node_rank(job, index)
    return f"node rank {rank} at {job.hosts[index].address} (rank {rank})"


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize("job", [FIXED], indirect=True)
def test_a_frozen_chief_ends_the_other_nodes_and_itself_when_it_resumes(job, cluster):
    job.at_step(3)
    chief = lost_line(job, 0)
    assert cluster[0].signal(signal.SIGSTOP)  # no FIN, no RST: its store stops answering
    ends = job.ended([1, 2], timeout=90)
    outputs = [job.output(i) for i in (1, 2)]
    assert sorted(ends) == [1, 2] and {code for code, _ in ends.values()} == {1}, outputs
    # 9 s without an answer from the store, then the launchers' own exit; gloo would wait 30 min
    # and torch's store read forever.
    assert max(seconds for _, seconds in ends.values()) < 30, ends
    for out in outputs:
        assert re.search(
            rf"error: the rendezvous store at \S+:29511 has not answered for \d+ s: its host,"
            rf" {re.escape(chief)}, is down, or this node is cut off from it",
            out,
        ), out
    cluster[0].signal(signal.SIGCONT)
    ((code, seconds),) = job.ended([0], timeout=60).values()
    assert code != 0 and seconds < 30, job.output(0)


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize("job", [FIXED], indirect=True)
def test_a_node_cut_off_the_network_ends_every_node_naming_it(job, cluster):
    job.at_step(3)
    lost = lost_line(job, 2)
    cluster[2].cut()
    ends = job.ended([0, 1, 2], timeout=90)
    outputs = [job.output(i) for i in range(3)]
    assert sorted(ends) == [0, 1, 2] and {code for code, _ in ends.values()} == {1}, outputs
    assert max(seconds for _, seconds in ends.values()) < 30, ends
    for out in outputs[:2]:
        assert f"root cause: {lost} was lost: no keep-alive for" in out, out
    assert "error: the rendezvous store at" in outputs[2], outputs[2]


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize("job", [FIXED], indirect=True)
@pytest.mark.parametrize("lost", [0, 2], ids=["chief", "worker"])
def test_a_crashed_node_ends_the_others_naming_it(job, cluster, lost):
    job.at_step(3)
    label = lost_line(job, lost)
    assert not netns.kill_all(cluster[lost].netns)  # its launcher and workers at once
    survivors = [i for i in range(3) if i != lost]
    ends = job.ended(survivors, timeout=60)
    outputs = [job.output(i) for i in survivors]
    assert sorted(ends) == survivors and {code for code, _ in ends.values()} == {1}, outputs
    assert max(seconds for _, seconds in ends.values()) < 30, ends
    for out in outputs:
        assert f"root cause: {label} was lost" in out, out


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize("job", [FIXED], indirect=True)
def test_a_node_whose_launcher_is_killed_leaves_no_worker(job, cluster):
    job.at_step(3)
    job.procs[2].kill()  # the launcher alone: its worker is in a session of its own
    assert wait_for(lambda: not cluster[2].pids(), timeout=10), cluster[2].pids()
    ends = job.ended([0, 1], timeout=60)
    outputs = [job.output(i) for i in (0, 1)]
    assert sorted(ends) == [0, 1] and {code for code, _ in ends.values()} == {1}, outputs
    assert max(seconds for _, seconds in ends.values()) < 30, ends


@pytest.mark.parametrize("cluster", [3], indirect=True)
@pytest.mark.parametrize(
    "job", [{**FIXED, "PROBE_EXIT_RANK": "1", "PROBE_EXIT_STEP": "3"}], indirect=True
)
def test_every_node_names_the_first_failure_across_nodes_and_exits_with_its_code(job, cluster):
    ends = job.ended([0, 1, 2], timeout=120)
    outputs = [job.output(i) for i in range(3)]
    assert sorted(ends) == [0, 1, 2] and {code for code, _ in ends.values()} == {7}, outputs
    for out in outputs:
        (cause,) = [line for line in out.splitlines() if "root cause:" in line]
        assert re.search(r"root cause: rank 1 exited with code 7\b", cause), out
