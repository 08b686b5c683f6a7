"""torchrun argv building and the BUILD < PET_* override rule."""

import pytest

from py_distributed import config
from py_distributed.cluster import Cluster, single_machine
from py_distributed.errors import UsageError, exit_code_of_worker

BUILD = {"nproc_per_node": "2", "nnodes": "1", "max_restarts": "0", "rdzv_backend": "c10d"}

ONE_MACHINE = single_machine()


def resolve(explicit, torchrun_args, environ, cluster: Cluster = ONE_MACHINE):
    """config.resolve with BUILD as the explicit values' source, on one machine by default."""
    return config.resolve(explicit, "BUILD", torchrun_args, environ, cluster)


def test_single_node_without_endpoint_is_standalone_on_a_free_loopback_port():
    config = resolve(BUILD, [], {})
    assert config.standalone
    assert config.argv() == [
        "--nproc-per-node=2",
        "--nnodes=1",
        "--max-restarts=0",
        "--rdzv-backend=c10d-loopback",
        "--rdzv-endpoint=127.0.0.1:0",
        f"--rdzv-id={config.rdzv_id}",
        "--local-addr=127.0.0.1",
    ]
    assert len(config.rdzv_id) == 32


def test_single_node_with_an_endpoint_uses_the_backend_asked_for():
    config = resolve(BUILD, [], {"PET_RDZV_ENDPOINT": "localhost:29400"})
    assert not config.standalone
    assert "--rdzv-backend=c10d" in config.argv() and "--local-addr=127.0.0.1" not in config.argv()


def test_each_launch_gets_its_own_run_id():
    assert resolve(BUILD, [], {}).rdzv_id != resolve(BUILD, [], {}).rdzv_id


def test_pet_variables_win_over_build_values():
    env = {
        "PET_NPROC_PER_NODE": "4",
        "PET_NNODES": "2:3",
        "PET_MAX_RESTARTS": "5",
        "PET_RDZV_ENDPOINT": "chief:29400",
        "PET_RDZV_ID": "job-7",
        "PET_RDZV_CONF": "join_timeout=60",
    }
    assert resolve(BUILD, [], env).argv() == [
        "--nproc-per-node=4",
        "--nnodes=2:3",
        "--max-restarts=5",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=chief:29400",
        "--rdzv-id=job-7",
        "--rdzv-conf=join_timeout=60",
    ]


def test_empty_pet_variable_keeps_the_build_value():
    assert resolve(BUILD, [], {"PET_NPROC_PER_NODE": ""}).nproc_per_node == "2"


def test_extra_torchrun_args_follow_the_knobs():
    argv = resolve(BUILD, ["--log-dir=/tmp/l", "--tee", "3"], {}).argv()
    assert argv[-3:] == ["--log-dir=/tmp/l", "--tee", "3"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PET_NPROC_PER_NODE": "0"}, "nproc_per_node='0' (from PET_NPROC_PER_NODE): use an int"),
        ({"PET_NPROC_PER_NODE": "-1"}, "nproc_per_node='-1'"),
        ({"PET_NPROC_PER_NODE": "abc"}, "nproc_per_node='abc'"),
        ({"PET_NPROC_PER_NODE": "100000"}, "use an int in 1..1024"),
        ({"PET_NNODES": "0"}, "nnodes='0' (from PET_NNODES)"),
        ({"PET_NNODES": "3:1"}, 'use N or "MIN:MAX"'),
        ({"PET_NNODES": "x"}, "nnodes='x'"),
        ({"PET_MAX_RESTARTS": "-2"}, "max_restarts='-2'"),
        ({"PET_RDZV_BACKEND": "zookeeper"}, "rdzv_backend='zookeeper' (from PET_RDZV_BACKEND)"),
        ({"PET_RDZV_ENDPOINT": "host:99999"}, "rdzv_endpoint='host:99999'"),
        ({"PET_RDZV_ENDPOINT": "a:b:c"}, "rdzv_endpoint='a:b:c'"),
        ({"PET_RDZV_CONF": "timeout"}, "use KEY=VALUE pairs"),
        ({"PET_RDZV_CONF": "join_timeout="}, "rdzv_conf='join_timeout='"),
        ({"PET_RDZV_CONF": "jöin=1"}, "rdzv_conf='jöin=1'"),
        ({"PET_RDZV_ENDPOINT": "host:1\n"}, "rdzv_endpoint='host:1\\n'"),
        ({"PET_RDZV_ENDPOINT": "ho st:1"}, "rdzv_endpoint='ho st:1'"),
        ({"PET_NNODES": "2"}, "nnodes=2 needs the chief's HOST:PORT"),
        ({"PET_RDZV_BACKEND": "static"}, "rdzv_backend=static needs HOST:PORT"),
        ({"PET_RDZV_ID": "a/b"}, "rdzv_id='a/b' (from PET_RDZV_ID): use letters"),
        ({"PET_RDZV_ID": "$(x)"}, "rdzv_id='$(x)'"),
        ({"PET_MAX_RESTARTS": "²"}, "max_restarts='²'"),
        ({"PET_NPROC_PER_NODE": "٣"}, "nproc_per_node='٣'"),
        ({"PET_RDZV_ENDPOINT": "host:٣"}, "rdzv_endpoint='host:٣'"),
    ],
)
def test_bad_values_name_the_value_its_source_and_the_fix(env, message):
    with pytest.raises(UsageError) as raised:
        resolve(BUILD, [], env)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_multi_node_run_id_is_torchruns_shared_default_not_a_fresh_one():
    # Every node's launcher must name the same rendezvous.
    env = {"PET_NNODES": "2", "PET_RDZV_ENDPOINT": "chief:29400"}
    assert resolve(BUILD, [], env).rdzv_id == resolve(BUILD, [], env).rdzv_id == "none"


def test_standalone_keeps_a_run_id_given_at_run_time():
    assert resolve(BUILD, [], {"PET_RDZV_ID": "mine"}).rdzv_id == "mine"


@pytest.mark.parametrize(
    ("exitcode", "job"), [(7, 7), (1, 1), (0, 1), (-9, 137), (-15, 143), (-6, 134)]
)
def test_job_exit_code_of_first_failed_worker(exitcode, job):
    assert exit_code_of_worker(exitcode) == job


@pytest.mark.parametrize(
    "arg", ["--nproc-per-node=3", "--nproc_per_node", "--rdzv-id=x", "--standalone", "--no-python"]
)
def test_torchrun_args_may_not_repeat_what_the_launcher_owns(arg):
    with pytest.raises(UsageError, match="torchrun_args has"):
        resolve(BUILD, [arg], {})


def test_ipv6_endpoint_is_accepted():
    assert resolve(BUILD, [], {"PET_RDZV_ENDPOINT": "[::1]:29400"}).rdzv_endpoint == "[::1]:29400"
