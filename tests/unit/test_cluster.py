"""Cluster discovery from TF_CONFIG, SLURM and Kubernetes variables, and what torchrun is told."""

import json

import pytest

from py_distributed.cluster import expand_hostlist, machine_from_env
from py_distributed.errors import UsageError
from py_distributed.settings import config

CLUSTER = {"chief": ["c.example:2222"], "worker": ["w0.example:2222", "w1.example:2222"]}


def tf_config(kind="worker", index=1, cluster=CLUSTER):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_tf_config_chief_and_workers_make_the_nodes_in_order():
    found = machine_from_env(tf_config("worker", 1))
    assert (found.source, found.num_nodes, found.num_workers) == ("TF_CONFIG", 3, 2)
    assert (found.node_rank, found.is_chief) == (2, False)
    assert (found.chief.address, found.this_machine.address, found.port) == (
        "c.example",
        "w1.example",
        2222,
    )
    chief = machine_from_env(tf_config("chief", 0))
    assert chief.is_chief and chief.this_machine.address == "c.example"


def test_tf_config_run_id_is_the_same_on_every_node_and_differs_between_clusters():
    ids = {machine_from_env(tf_config(k, i)).job_id for k, i in [("chief", 0), ("worker", 1)]}
    assert len(ids) == 1
    other = dict(CLUSTER, worker=["w9.example:2222"])
    assert machine_from_env(tf_config("worker", 0, other)).job_id not in ids


def test_ipv6_nodes_with_and_without_brackets():
    found = machine_from_env(
        tf_config("chief", 0, {"chief": ["[fd00::1]:7"], "worker": ["fd00::2"]})
    )
    assert (found.chief.address, found.port) == ("fd00::1", 7)
    found = machine_from_env(tf_config("worker", 0, {"chief": ["[fd00::1]"], "worker": ["h:1"]}))
    assert (found.chief.address, found.this_machine.address, found.port) == ("fd00::1", "h", None)
    found = machine_from_env({"MASTER_ADDR": "[fd00::1]", "PET_NNODES": "2", "RANK": "1"})
    assert found.chief.address == "fd00::1"


def test_tf_config_master_is_the_chief_as_in_tf1():
    found = machine_from_env(tf_config("master", 0, {"master": ["m:1"], "worker": ["w:1"]}))
    assert found.is_chief and found.num_nodes == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "TF_CONFIG: not JSON"),
        ("[]", "TF_CONFIG: not a JSON object"),
        ('{"cluster": {}}', 'TF_CONFIG: needs "cluster" and "task"'),
        (tf_config("worker", 0, {"worker": ["w:1"]})["TF_CONFIG"], 'cluster needs "chief"'),
        (tf_config("worker", 2)["TF_CONFIG"], "task index 2 is out of range for 2 worker(s)"),
        (tf_config("worker", "1")["TF_CONFIG"], "task index '1' is out of range"),
        (tf_config("ps", 0)["TF_CONFIG"], "task type 'ps' is not a torch node"),
        (
            tf_config("chief", 0, dict(CLUSTER, chief=["a b:1"]))["TF_CONFIG"],
            "node='a b:1': use HOST",
        ),
        (tf_config("chief", 0, dict(CLUSTER, chief=["c:99999"]))["TF_CONFIG"], "PORT in 1..65535"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["[::1]80"]))["TF_CONFIG"], "or [IPv6]:PORT"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["h:1:2"]))["TF_CONFIG"], "use HOST, HOST:PORT"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["hé:1"]))["TF_CONFIG"], "use HOST, HOST:PORT"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["c:١٢"]))["TF_CONFIG"], "PORT in 1..65535"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["[fd00::1"]))["TF_CONFIG"], "[IPv6]:PORT"),
        (tf_config("chief", 0, dict(CLUSTER, chief=["[h]:1"]))["TF_CONFIG"], "[IPv6]:PORT"),
    ],
)
def test_malformed_tf_config_is_one_line_naming_it(value, message):
    with pytest.raises(UsageError, match=r"^TF_CONFIG") as error:
        machine_from_env({"TF_CONFIG": value})
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("node1", ["node1"]),
        ("gpu[01-03,7]", ["gpu01", "gpu02", "gpu03", "gpu7"]),
        ("a[1-2]-b,c", ["a1-b", "a2-b", "c"]),
        ("r[1-2]n[8-9]", ["r1n8", "r1n9", "r2n8", "r2n9"]),
        ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ],
)
def test_slurm_host_lists_expand_as_scontrol_show_hostnames(text, hosts):
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["n[1-", "n[3-1]", "n[a]", "n]", "", "a,,b"])
def test_unreadable_slurm_host_list_is_an_error_naming_the_variable(text):
    with pytest.raises(UsageError, match=r"^SLURM_JOB_NODELIST="):
        expand_hostlist(text)


def test_slurm_nodes_rank_port_and_job_id():
    env = {
        "SLURM_JOB_NODELIST": "gpu[1-3]",
        "SLURM_NODEID": "1",
        "SLURM_NNODES": "3",
        "SLURM_JOB_ID": "123456",
        "SLURM_STEP_ID": "0",
        "SLURM_GPUS_ON_NODE": "8",
    }
    found = machine_from_env(env)
    assert (found.source, found.num_nodes, found.node_rank) == ("SLURM", 3, 1)
    assert (found.chief.address, found.this_machine.address) == ("gpu1", "gpu2")
    assert found.port == 15000 + 3456 and found.job_id == "slurm-123456"
    assert found.this_machine.num_accelerators == 8
    assert machine_from_env({**env, "MASTER_PORT": "4000"}).port == 4000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLURM_JOB_NODELIST": "n[1-2]"}, "SLURM_NODEID is unset but SLURM_JOB_NODELIST names 2"),
        ({"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NODEID": "2"}, "SLURM_NODEID='2': use an int"),
        ({"SLURM_NODELIST": "n1", "SLURM_NNODES": "2"}, "names 1 nodes, SLURM_NNODES says 2"),
        (
            {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NODEID": "0", "SLURM_LOCALID": "1"},
            "SLURM_LOCALID='1': several launchers on one node",
        ),
        ({"SLURM_JOB_NODELIST": "n1", "MASTER_PORT": "x"}, "MASTER_PORT='x': use a port in"),
    ],
)
def test_inconsistent_slurm_variables_are_errors(env, message):
    with pytest.raises(UsageError, match=message):
        machine_from_env(env)


# What a batch script sees on its allocation's first node (sbatch -N2; slurmstepd's batch step, set
# by src/common/env.c: env_array_for_batch_job and setup_env): the job's variables, no step's.
BATCH_SCRIPT = {
    "SLURM_JOB_ID": "77",
    "SLURM_JOBID": "77",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODELIST": "n[1-2]",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_PROCID": "0",
    "ENVIRONMENT": "BATCH",
}


def test_a_multi_node_batch_script_without_srun_is_refused_naming_srun():
    with pytest.raises(UsageError) as error:
        machine_from_env(BATCH_SCRIPT)
    message = str(error.value)
    assert message.startswith("SLURM_NODELIST names 2 nodes but SLURM_STEP_ID and")
    assert "`srun --ntasks-per-node=1 ...`" in message and "\n" not in message


def test_srun_in_the_same_batch_script_is_a_step_and_accepted():
    # What `srun --ntasks-per-node=1` adds on the second node (env.c: env_array_for_step).
    step = {"SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_NUM_NODES": "2"}
    found = machine_from_env({**BATCH_SCRIPT, **step, "SLURM_NODEID": "1", "SLURM_PROCID": "1"})
    assert (found.source, found.num_nodes, found.node_rank) == ("SLURM", 2, 1)


def test_a_single_node_batch_script_without_srun_runs():
    one = {**BATCH_SCRIPT, "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_NUM_NODES": "1"}
    found = machine_from_env({**one, "SLURM_NODELIST": "n1", "SLURM_NNODES": "1"})
    assert (found.source, found.num_nodes, found.job_id) == ("SLURM", 1, "slurm-77")


def test_slurm_step_nodes_win_over_the_allocations():
    # `srun -N2` inside a 4-node allocation: the step runs on n3 and n4.
    env = {
        "SLURM_JOB_NODELIST": "n[1-4]",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_NODELIST": "n[3-4]",
        "SLURM_NNODES": "2",
        "SLURM_STEP_NODELIST": "n[3-4]",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_LOCALID": "0",
    }
    found = machine_from_env(env)
    assert (found.num_nodes, found.chief.address, found.this_machine.address) == (2, "n3", "n4")


def test_pytorchjob_pod_variables():
    env = {"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "4", "RANK": "2"}
    env.update({"PET_NNODES": "2", "PET_NODE_RANK": "1"})
    found = machine_from_env(env)
    assert (found.source, found.num_nodes, found.node_rank, found.port) == (
        "Kubernetes",
        2,
        1,
        23456,
    )
    # A worker pod is told only the chief's address.
    assert (found.chief.address, found.this_machine.address) == ("job-master-0", "")


def test_pytorchjob_master_pod_told_localhost_joins_its_workers_run():
    # The operator gives the master pod MASTER_ADDR=localhost, the others the master's name.
    pods = [("localhost", "0"), ("job-master-0", "1"), ("job-master-0", "2")]
    found = [
        machine_from_env(
            {"MASTER_ADDR": addr, "MASTER_PORT": "23456", "PET_NNODES": "3", "RANK": rank}
        )
        for addr, rank in pods
    ]
    assert len({f.job_id for f in found}) == 1
    assert [f.node_rank for f in found] == [0, 1, 2]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PET_NNODES": "4"}, "PET_NNODES='4' but no PET_NODE_RANK, RANK or JOB_COMPLETION_INDEX"),
        ({"PET_NNODES": "a:4", "RANK": "0"}, "PET_NNODES='a:4': use N or \"MIN:MAX\""),
        ({"PET_NNODES": "5:4", "RANK": "0"}, "PET_NNODES='5:4'"),
        ({"WORLD_SIZE": "1:2", "RANK": "0"}, "WORLD_SIZE='1:2': use a number of nodes N > 0"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': use a number of nodes N > 0"),
        ({"PET_NNODES": "0:2", "RANK": "0"}, "PET_NNODES='0:2'"),
        ({"PET_NNODES": "1", "MASTER_PORT": "0"}, "MASTER_PORT='0': use a port in 1..65535"),
        ({"PET_NNODES": "1", "MASTER_ADDR": "a b"}, "MASTER_ADDR='a b': use HOST, HOST:PORT"),
        ({"PET_NNODES": "2", "PET_NODE_RANK": "2"}, "PET_NODE_RANK='2': use an int in 0..1"),
    ],
)
def test_malformed_kubernetes_variables_are_one_line_naming_them(env, message):
    with pytest.raises(UsageError) as error:
        machine_from_env({"MASTER_ADDR": "m", **env})
    assert message in str(error.value)


def test_trainer_jobset_variables_and_elastic_node_range():
    env = {"PET_MASTER_ADDR": "t-node-0-0.t", "PET_MASTER_PORT": "29400", "PET_NNODES": "2:4"}
    found = machine_from_env({**env, "JOB_COMPLETION_INDEX": "0"})
    assert (found.num_nodes, found.is_chief, found.this_machine.address) == (
        4,
        True,
        "t-node-0-0.t",
    )


def test_master_addr_alone_is_torchs_own_variable_not_a_cluster():
    assert machine_from_env({"MASTER_ADDR": "localhost"}).source == "single machine"


def test_first_description_wins_and_explicit_arguments_win_over_all():
    env = {**tf_config("chief", 0), "SLURM_JOB_NODELIST": "x[1-5]", "SLURM_NODEID": "0"}
    assert machine_from_env(env).source == "TF_CONFIG"
    found = machine_from_env(env, chief="10.0.0.1:7", workers=["10.0.0.2:7"], node_rank=1)
    assert (found.source, found.num_nodes, found.port) == ("arguments", 2, 7)
    with pytest.raises(UsageError, match=r"^arguments node='10.0.0.1:x': use HOST, HOST:PORT"):
        machine_from_env(env, chief="10.0.0.1:x")


def test_resolve_takes_nodes_endpoint_and_run_id_from_the_cluster():
    worker = machine_from_env(tf_config("worker", 0))
    resolved = config.resolve({"nproc_per_node": "2"}, "BUILD", [], {}, worker)
    assert (resolved.min_nodes, resolved.max_nodes) == (3, 3)
    assert resolved.rdzv_endpoint == "c.example:2222" and resolved.rdzv_id.startswith("tf-")
    chief = machine_from_env(tf_config("chief", 0))
    # pytorch#79388: the chief reaches its own store through localhost.
    assert config.resolve({}, "BUILD", [], {}, chief).rdzv_endpoint == "localhost:2222"


def test_run_time_and_explicit_values_win_over_the_cluster():
    worker = machine_from_env(tf_config("worker", 0))
    env = {"PET_RDZV_ENDPOINT": "elsewhere:1", "PET_RDZV_ID": "mine"}
    resolved = config.resolve({"nnodes": "2:3"}, "BUILD", [], env, worker)
    assert (resolved.rdzv_endpoint, resolved.rdzv_id, resolved.max_nodes) == (
        "elsewhere:1",
        "mine",
        3,
    )


def test_explicit_nnodes_that_disagree_with_the_cluster_are_an_error():
    worker = machine_from_env(tf_config("worker", 0))
    with pytest.raises(UsageError, match=r"nnodes='2' \(from BUILD\): TF_CONFIG describes 3 nodes"):
        config.resolve({"nnodes": "2"}, "BUILD", [], {}, worker)


def test_several_nodes_without_endpoint_or_description_name_both_fixes():
    one = machine_from_env({})
    with pytest.raises(UsageError, match="needs the chief's HOST:PORT, or a cluster description"):
        config.resolve({"nnodes": "2"}, "BUILD", [], {}, one)


def test_an_etcd_rendezvous_is_not_pointed_at_the_chief():
    worker = machine_from_env(tf_config("worker", 0))
    etcd_needs = r"rdzv_endpoint='' \(from default\): rdzv_backend=etcd needs HOST:PORT"
    with pytest.raises(UsageError, match=etcd_needs):
        config.resolve({}, "BUILD", [], {"PET_RDZV_BACKEND": "etcd"}, worker)


def test_static_backend_ranks_described_nodes_unless_pet_node_rank_is_set():
    worker = machine_from_env(tf_config("worker", 1))
    static = {"PET_RDZV_BACKEND": "static"}
    assert config.resolve({}, "BUILD", [], static, worker).node_rank == 2
    mine = {**static, "PET_NODE_RANK": "1"}
    assert config.resolve({}, "BUILD", [], mine, worker).node_rank is None  # torchrun reads it
    undescribed = {**static, "PET_NNODES": "2", "PET_RDZV_ENDPOINT": "h:1"}
    assert config.resolve({}, "BUILD", [], undescribed, machine_from_env({})).node_rank is None


def test_explicit_nnodes_that_agree_with_the_cluster_are_kept():
    worker = machine_from_env(tf_config("worker", 0))
    resolved = config.resolve({"nnodes": "2:4"}, "BUILD", [], {}, worker)
    assert (resolved.min_nodes, resolved.max_nodes, resolved.rdzv_endpoint) == (
        2,
        4,
        "c.example:2222",
    )


@pytest.mark.parametrize(
    ("conf", "told"),
    [
        # torch's store client tries for up to about 2.5 read timeouts: a third of join_timeout.
        ("join_timeout=10", "join_timeout=10,read_timeout=3"),
        ("join_timeout=2", "join_timeout=2,read_timeout=1"),
        (
            "last_call_timeout=5,join_timeout=90",
            "last_call_timeout=5,join_timeout=90,read_timeout=30",
        ),
        # torch's own 60 s already fits, or the user chose read_timeout, or no join_timeout.
        ("join_timeout=180", "join_timeout=180"),
        ("join_timeout=10,read_timeout=30", "join_timeout=10,read_timeout=30"),
        ("last_call_timeout=5", "last_call_timeout=5"),
        ("", ""),
    ],
)
def test_a_worker_is_told_a_read_timeout_that_fits_in_join_timeout(conf, told):
    worker = machine_from_env(tf_config("worker", 0))
    assert config.resolve({}, "BUILD", [], {"PET_RDZV_CONF": conf}, worker).rdzv_conf == told


@pytest.mark.parametrize(
    ("nnodes", "conf", "told"),
    [
        # Elastic: the survivors of a lost node wait 5 s for more, not torch's 30 s.
        ("2:3", "", "last_call_timeout=5"),
        ("2:3", "join_timeout=180", "join_timeout=180,last_call_timeout=5"),
        ("2:3", "last_call_timeout=20", "last_call_timeout=20"),
        # A fixed number of nodes: torch's.
        ("3", "", ""),
    ],
)
def test_an_elastic_job_waits_5_s_for_more_nodes_unless_told(nnodes, conf, told):
    worker = machine_from_env(tf_config("worker", 0))
    environ = {"PET_RDZV_CONF": conf, "PET_NNODES": nnodes}
    assert config.resolve({}, "BUILD", [], environ, worker).rdzv_conf == told


def test_read_timeout_is_left_to_single_node_jobs_and_other_backends():
    one = machine_from_env({})
    conf = {"PET_RDZV_CONF": "join_timeout=10"}
    assert config.resolve({}, "BUILD", [], conf, one).rdzv_conf == "join_timeout=10"
    worker = machine_from_env(tf_config("worker", 0))
    etcd = {**conf, "PET_RDZV_BACKEND": "etcd-v2", "PET_RDZV_ENDPOINT": "etcd:2379"}
    assert config.resolve({}, "BUILD", [], etcd, worker).rdzv_conf == "join_timeout=10"
