"""torchrun argv building and the BUILD < PET_* override rule."""

import pytest

from py_distributed.config import resolve
from py_distributed.errors import UsageError

BUILD = {"nproc_per_node": "2", "nnodes": "1", "max_restarts": "0", "rdzv_backend": "c10d"}


def test_single_node_without_endpoint_is_standalone_on_a_free_loopback_port():
    config = resolve(BUILD, [], {})
    argv = config.argv()
    assert argv[:5] == [
        "--nproc-per-node=2",
        "--nnodes=1",
        "--max-restarts=0",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=localhost:0",
    ]
    assert argv[5] == f"--rdzv-id={config.rdzv_id}" and len(config.rdzv_id) == 32


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
        ({"PET_NNODES": "2"}, "nnodes=2 needs the chief's HOST:PORT"),
    ],
)
def test_bad_values_name_the_value_its_source_and_the_fix(env, message):
    with pytest.raises(UsageError) as raised:
        resolve(BUILD, [], env)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "arg", ["--nproc-per-node=3", "--nproc_per_node", "--rdzv-id=x", "--standalone", "--no-python"]
)
def test_torchrun_args_may_not_repeat_what_the_launcher_owns(arg):
    with pytest.raises(UsageError, match="torchrun_args has"):
        resolve(BUILD, [arg], {})


def test_ipv6_endpoint_is_accepted():
    assert resolve(BUILD, [], {"PET_RDZV_ENDPOINT": "[::1]:29400"}).rdzv_endpoint == "[::1]:29400"
