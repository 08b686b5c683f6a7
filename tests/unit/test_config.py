"""The torchrun settings of one launch: precedence (PET_* > explicit > cluster > default), each
value's grammar, and the single-node decision."""

import pytest

from py_distributed.cluster import Cluster, single_machine
from py_distributed.errors import UsageError, exit_code_of_worker
from py_distributed.settings import config

BUILD = {"nproc_per_node": "2", "nnodes": "1", "max_restarts": "0", "rdzv_backend": "c10d"}

ONE_MACHINE = single_machine()


def resolve(explicit, torchrun_args, environ, cluster: Cluster = ONE_MACHINE):
    """config.resolve with BUILD as the explicit values' source, on one machine by default."""
    return config.resolve(explicit, "BUILD", torchrun_args, environ, cluster)


def test_single_node_without_endpoint_is_standalone_with_a_fresh_run_id():
    first, second = resolve(BUILD, [], {}), resolve(BUILD, [], {})
    assert first.standalone and not first.multi_node
    assert first.rdzv_id != second.rdzv_id


def test_single_node_with_an_endpoint_uses_the_backend_asked_for():
    resolved = resolve(BUILD, [], {"PET_RDZV_ENDPOINT": "localhost:29400"})
    assert not resolved.standalone
    assert (resolved.rdzv_backend, resolved.rdzv_endpoint) == ("c10d", "localhost:29400")


def test_pet_variables_win_over_build_values():
    env = {
        "PET_NPROC_PER_NODE": "4",
        "PET_NNODES": "2:3",
        "PET_MAX_RESTARTS": "5",
        "PET_RDZV_ENDPOINT": "chief:29400",
        "PET_RDZV_ID": "job-7",
        "PET_RDZV_CONF": "join_timeout=600",
    }
    resolved = resolve(BUILD, [], env)
    assert (
        resolved.nproc_per_node,
        resolved.min_nodes,
        resolved.max_nodes,
        resolved.max_restarts,
        resolved.rdzv_endpoint,
        resolved.rdzv_id,
        resolved.rdzv_conf,
    ) == ("4", 2, 3, 5, "chief:29400", "job-7", "join_timeout=600,last_call_timeout=5")


def test_start_method_is_spawn_unless_build_or_pet_start_method_says():
    assert resolve(BUILD, [], {}).start_method == "spawn"
    assert resolve({**BUILD, "start_method": "fork"}, [], {}).start_method == "fork"
    forkserver = {"PET_START_METHOD": "forkserver"}
    assert resolve({**BUILD, "start_method": "fork"}, [], forkserver).start_method == "forkserver"


def test_empty_pet_variable_keeps_the_build_value():
    assert resolve(BUILD, [], {"PET_NPROC_PER_NODE": ""}).nproc_per_node == "2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PET_NPROC_PER_NODE": "0"}, "nproc_per_node='0' (from PET_NPROC_PER_NODE): use an int"),
        ({"PET_NPROC_PER_NODE": "-1"}, "nproc_per_node='-1'"),
        ({"PET_NPROC_PER_NODE": "abc"}, "nproc_per_node='abc'"),
        ({"PET_NPROC_PER_NODE": "1.5"}, "nproc_per_node='1.5'"),
        ({"PET_NPROC_PER_NODE": " 2"}, "nproc_per_node=' 2'"),
        ({"PET_NPROC_PER_NODE": "100000"}, "use an int in 1..1024"),
        ({"PET_NPROC_PER_NODE": "٣"}, "nproc_per_node='٣'"),
        ({"PET_NNODES": "0"}, "nnodes='0' (from PET_NNODES)"),
        ({"PET_NNODES": "3:1"}, 'use N or "MIN:MAX"'),
        ({"PET_NNODES": "x"}, "nnodes='x'"),
        ({"PET_NNODES": "1:2:3"}, "nnodes='1:2:3'"),
        ({"PET_NNODES": ":"}, "nnodes=':'"),
        ({"PET_MAX_RESTARTS": "-1"}, "max_restarts='-1' (from PET_MAX_RESTARTS): use an int >= 0"),
        ({"PET_MAX_RESTARTS": "many"}, "max_restarts='many'"),
        ({"PET_MAX_RESTARTS": "²"}, "max_restarts='²'"),
        ({"PET_RDZV_BACKEND": "zookeeper"}, "rdzv_backend='zookeeper' (from PET_RDZV_BACKEND)"),
        (
            {"PET_START_METHOD": "threads"},
            "start_method='threads' (from PET_START_METHOD): use one of spawn, fork, forkserver",
        ),
        ({"PET_RDZV_ENDPOINT": "host:99999"}, "rdzv_endpoint='host:99999'"),
        ({"PET_RDZV_ENDPOINT": "a:b:c"}, "rdzv_endpoint='a:b:c'"),
        ({"PET_RDZV_ENDPOINT": ":29400"}, "rdzv_endpoint=':29400'"),
        ({"PET_RDZV_ENDPOINT": "host:"}, "rdzv_endpoint='host:'"),
        ({"PET_RDZV_ENDPOINT": "node]:29400"}, "rdzv_endpoint='node]:29400'"),
        ({"PET_RDZV_ENDPOINT": "host:1\n"}, "rdzv_endpoint='host:1\\n'"),
        ({"PET_RDZV_ENDPOINT": "ho st:1"}, "rdzv_endpoint='ho st:1'"),
        ({"PET_RDZV_ENDPOINT": "host:٣"}, "rdzv_endpoint='host:٣'"),
        ({"PET_RDZV_CONF": "timeout"}, "use KEY=VALUE pairs"),
        ({"PET_RDZV_CONF": "join_timeout="}, "rdzv_conf='join_timeout='"),
        ({"PET_RDZV_CONF": "join_timeout=1,=2"}, "rdzv_conf='join_timeout=1,=2'"),
        ({"PET_RDZV_CONF": "jöin=1"}, "rdzv_conf='jöin=1'"),
        ({"PET_RDZV_CONF": "join_timeout=0"}, "join_timeout=0: use a positive number"),
        ({"PET_RDZV_CONF": "join_timeout=abc"}, "join_timeout=abc: use a positive number"),
        ({"PET_RDZV_CONF": "keep_alive_interval=-1"}, "keep_alive_interval=-1: use a positive"),
        ({"PET_LOCAL_ADDR": "host:1"}, "local_addr='host:1' (from PET_LOCAL_ADDR): use this node"),
        ({"PET_NNODES": "2"}, "nnodes=2 needs the chief's HOST:PORT"),
        ({"PET_RDZV_BACKEND": "static"}, "rdzv_backend=static needs HOST:PORT"),
        ({"PET_RDZV_ID": "a/b"}, "rdzv_id='a/b' (from PET_RDZV_ID): use letters"),
        ({"PET_RDZV_ID": "../../etc"}, "rdzv_id='../../etc'"),
        ({"PET_RDZV_ID": "$(x)"}, "rdzv_id='$(x)'"),
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
    "arg",
    [
        "--nproc-per-node=3",
        "--nproc_per_node",
        "--rdzv-id=x",
        "--standalone",
        "--no-python",
        "--start-method=fork",
    ],
)
def test_torchrun_args_may_not_repeat_what_the_launcher_owns(arg):
    with pytest.raises(UsageError, match="torchrun_args has"):
        resolve(BUILD, [arg], {})


@pytest.mark.parametrize(
    ("endpoint", "host", "port", "spelled"),
    [
        ("[::1]:29400", "::1", 29400, "[::1]:29400"),
        ("fd00::1", "fd00::1", None, "[fd00::1]"),
        ("node-1.example", "node-1.example", None, "node-1.example"),
    ],
)
def test_ipv6_and_portless_endpoints_are_accepted(endpoint, host, port, spelled):
    resolved = resolve(BUILD, [], {"PET_RDZV_ENDPOINT": endpoint})
    assert (resolved.rdzv_host, resolved.rdzv_port, resolved.rdzv_endpoint) == (host, port, spelled)
