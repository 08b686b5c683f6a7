"""Multi-node jobs on simulated hosts (tests/harness/netns.py): one launcher per host, the cluster
described by TF_CONFIG, SLURM or Kubernetes variables, torch's c10d rendezvous across hosts, gloo
between. Faults across hosts: test_faults.py."""

import os
import re
import time

import pytest
from harness.bazel import wait_for
from harness.launch import reports
from harness.netns import tf_config
from harness.procfs import processes_with_env

ALLREDUCE = "tests/e2e/allreduce"  # a py_distributed_binary, nproc_per_node = 2
SEED_API = "tests/e2e/seed_api"  # a plain py_binary calling maybe_run_training, nproc 2


def launch_all(built, binary, hosts, probe_dir, env_of):
    """Starts `binary` on each host with the environment `env_of(index)`; returns (code, output)
    per host, in host order."""
    base = {**os.environ, "PROBE_DIR": str(probe_dir), "PY_DISTRIBUTED_VERBOSE": "1"}
    logs = [probe_dir.parent / f"host{i}.log" for i in range(len(hosts))]
    procs = [
        h.popen([str(built / binary)], {**base, **env_of(i)}, log)
        for i, (h, log) in enumerate(zip(hosts, logs, strict=True))
    ]
    results = []
    for proc, log in zip(procs, logs, strict=True):
        try:
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        results.append((proc.returncode, log.read_text()))
    return results


def torchrun_line(output):
    return next(line for line in output.splitlines() if ": torchrun --" in line)


def assert_one_job(found, hosts, nproc):
    """Every rank joined one job of len(hosts) * nproc ranks, with gloo between hosts."""
    world = len(hosts) * nproc
    assert [r["rank"] for r in found] == list(range(world))
    assert {(r["world_size"], r["sum"]) for r in found} == {(world, world)}
    assert sorted(r["group_rank"] for r in found) == sorted(list(range(len(hosts))) * nproc)
    # The workers' store is on the rank-0 node at the address other hosts reach it by, not at
    # the host name's loopback address; gloo uses the interface that holds it.
    assert len({r["master_addr"] for r in found}) == 1
    assert found[0]["master_addr"] in {h.address for h in hosts}
    assert {r["gloo_socket_ifname"] for r in found} == {"eth0"}


@pytest.mark.parametrize("cluster", [2], indirect=True)
def test_tf_config_binary_trains_across_hosts_with_the_chief_on_localhost(
    built, cluster, probe_dir
):
    results = launch_all(
        built, ALLREDUCE, cluster, probe_dir, lambda i: {"TF_CONFIG": tf_config(cluster, i)}
    )
    assert [code for code, _ in results] == [0, 0], results
    assert_one_job(reports(probe_dir), cluster, nproc=2)
    chief, worker = (torchrun_line(out) for _, out in results)
    # pytorch#79388: the chief must see itself as the store's host.
    assert "--rdzv-endpoint=localhost:29511" in chief
    assert f"--rdzv-endpoint={cluster[0].address}:29511" in worker
    assert f"--local-addr={cluster[0].address}" in chief
    assert f"--local-addr={cluster[1].address}" in worker
    run_ids = {re.search(r"--rdzv-id=(\S+)", line)[1] for line in (chief, worker)}
    assert len(run_ids) == 1 and run_ids.pop().startswith("tf-")


@pytest.mark.parametrize("cluster", [2], indirect=True)
def test_tf_config_maybe_run_training_hands_typed_kwargs_to_every_rank(built, cluster, probe_dir):
    results = launch_all(
        built, SEED_API, cluster, probe_dir, lambda i: {"TF_CONFIG": tf_config(cluster, i)}
    )
    assert [code for code, _ in results] == [0, 0], results
    found = reports(probe_dir)
    assert_one_job(found, cluster, nproc=2)
    for report in found:
        # Evaluated once per node, by its launcher: not re-parsed from strings by the workers.
        assert report["kwargs"]["evaluated_by"] == ["int", str(report["launcher_pid"])]
        assert report["kwargs"]["schedule"] == ["dict", "{'warmup': 1, 'decay': (0.1, None)}"]
        assert report["kwargs"]["name"] == ["str", repr("a b=c\n--d ü")]


@pytest.mark.parametrize("cluster", [3], indirect=True)
def test_slurm_step_on_three_hosts_of_a_larger_allocation(built, cluster, probe_dir):
    suffix = cluster[0].name.partition(".")[2]
    # What `srun -N3 --ntasks-per-node=1` sets in a 5-node allocation, on each of its nodes.
    slurm = {
        "SLURM_JOB_NODELIST": f"node[1-5].{suffix}",
        "SLURM_JOB_NUM_NODES": "5",
        "SLURM_NODELIST": f"node[1-3].{suffix}",
        "SLURM_NNODES": "3",
        "SLURM_STEP_NODELIST": f"node[1-3].{suffix}",
        "SLURM_STEP_NUM_NODES": "3",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_ID": "4242",
        "PET_NPROC_PER_NODE": "1",  # 2 cores here
    }
    results = launch_all(
        built, ALLREDUCE, cluster, probe_dir, lambda i: {**slurm, "SLURM_NODEID": str(i)}
    )
    assert [code for code, _ in results] == [0, 0, 0], results
    assert_one_job(reports(probe_dir), cluster, nproc=1)
    lines = [torchrun_line(out) for _, out in results]
    endpoints = [re.search(r"--rdzv-endpoint=(\S+)", line)[1].rpartition(":") for line in lines]
    (port,) = {port for _, _, port in endpoints}  # one rendezvous, on every node
    assert port != "29400", port  # torchrun's default: a SLURM job gets a port of its own
    # pytorch#79388: the chief must see itself as the store's host; the others name the first host.
    assert [host for host, _, _ in endpoints] == ["localhost", cluster[0].name, cluster[0].name]
    assert all("--rdzv-id=slurm-4242" in line for line in lines)
    assert all(f"--local-addr={h.address}" in line for h, line in zip(cluster, lines, strict=True))


def test_pytorchjob_environment_with_the_master_told_localhost(built, pods, probe_dir):
    def pod(index):
        # What Kubeflow's PyTorchJob sets on every pod (pkg/controller.v1/pytorch/envvar.go):
        # the master pod is told MASTER_ADDR=localhost, the others the master's name.
        return {
            "MASTER_ADDR": "localhost" if index == 0 else pods[0].name,
            "MASTER_PORT": "23456",
            "WORLD_SIZE": "4",
            "RANK": str(index),
            "PET_NNODES": "2",
            "PET_NODE_RANK": str(index),
            "PET_NPROC_PER_NODE": "2",
        }

    results = launch_all(built, SEED_API, pods, probe_dir, pod)
    assert [code for code, _ in results] == [0, 0], results
    assert_one_job(reports(probe_dir), pods, nproc=2)
    # WORLD_SIZE and RANK did not make either launcher a worker.
    assert all(out.count("seed_api: launcher") == 1 for _, out in results)
    chief, worker = (torchrun_line(out) for _, out in results)
    assert "--rdzv-endpoint=localhost:23456" in chief
    assert f"--rdzv-endpoint={pods[0].name}:23456" in worker
    # The master knows no address of its own: its host name's; a worker pod: its route's.
    assert f"--local-addr={pods[0].address}" in chief
    assert f"--local-addr={pods[1].address}" in worker


@pytest.mark.parametrize("cluster", [3], indirect=True)
def test_a_node_that_never_comes_fails_the_others_within_the_join_timeout(
    built, cluster, probe_dir
):
    started = time.monotonic()
    env = {"PET_RDZV_CONF": "join_timeout=10", "PET_NPROC_PER_NODE": "1"}
    results = launch_all(
        built,
        ALLREDUCE,
        cluster[:2],  # the third host is described but never starts its launcher
        probe_dir,
        lambda i: {**env, "TF_CONFIG": tf_config(cluster, i)},
    )
    elapsed = time.monotonic() - started
    assert all(code == 1 for code, _ in results), results
    for _, out in results:
        # The first to give up closes the rendezvous; the other one finds it closed.
        failed = r"error: rendezvous tf-\S+ at \S+:29511 (timed out|was closed by another node)"
        assert re.search(failed + r".* 3 nodes .*10 s.*; start every node", out), out
    # The join timeout, plus start-up and shutdown on a loaded 2-core machine; far below the
    # default join timeout (600 s) that a launcher ignoring rdzv_conf would wait.
    assert elapsed < 10 + 80, elapsed
    assert reports(probe_dir) == []
    assert not processes_with_env("PROBE_DIR", str(probe_dir))


@pytest.mark.parametrize("cluster", [2], indirect=True)
def test_a_worker_whose_chief_never_comes_fails_within_the_join_timeout(built, cluster, probe_dir):
    chief, worker = cluster  # the chief's host exists, but its launcher never starts
    env = {
        **os.environ,
        "PROBE_DIR": str(probe_dir),
        "PY_DISTRIBUTED_VERBOSE": "1",
        "PET_RDZV_CONF": "join_timeout=10",
        "PET_NPROC_PER_NODE": "1",
        "TF_CONFIG": tf_config(cluster, 1),
    }
    log = probe_dir.parent / "worker.log"
    proc = worker.popen([str(built / ALLREDUCE)], env, log)
    try:
        # Timed from the torchrun line, so that a slow start on a loaded machine does not count.
        assert wait_for(lambda: ": torchrun --" in log.read_text(), timeout=120), log.read_text()
        handed_over = time.monotonic()
        proc.wait(timeout=120)
        waited = time.monotonic() - handed_over
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == 1, out
    (error,) = [line for line in out.splitlines() if "error:" in line]
    assert re.search(
        rf"error: rendezvous tf-\S+ at {re.escape(chief.address)}:29511: the chief's store did not"
        r" answer \(read_timeout=3 s; .+\); start the chief node, or check the address",
        error,
    ), error
    # Within join_timeout, plus the launcher's exit on a loaded 2-core machine; with torch's own
    # read timeout (60 s, tried twice) the worker would wait 60 to 150 s.
    assert waited < 10 + 20, waited
    assert reports(probe_dir) == []
    assert not processes_with_env("PROBE_DIR", str(probe_dir))
