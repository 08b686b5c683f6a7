"""The hand-off to torch elastic before any worker starts, and the rendezvous it registers."""

import os
import socket
from datetime import timedelta

import pytest
from harness.procfs import listening_addresses
from torch.distributed import run as torch_run
from torch.distributed.elastic.rendezvous import RendezvousParameters, dynamic_rendezvous

from py_distributed.cluster import single_machine
from py_distributed.errors import UsageError
from py_distributed.launch import facilities, loopback, rounds, stores, torchrun
from py_distributed.launch.entry import StubEntry
from py_distributed.settings import config

BUILD = {"nproc_per_node": "2"}
ENTRY = StubEntry("/bin/true", {})


def prepare(environ, torchrun_args=()):
    resolved = config.resolve(BUILD, "BUILD", torchrun_args, environ, single_machine())
    return torchrun.prepare(resolved, ENTRY, ["--", "a"], {}, name="unit", scratch="/tmp/unit")


def test_user_arguments_are_passed_untouched_even_a_leading_double_dash():
    launch = prepare({})
    assert launch.entrypoint == "/bin/true"
    assert launch.entrypoint_args[-2:] == ["--", "a"]
    assert launch.argv[-3:] == ["/bin/true", "--", "a"]


def test_a_standalone_job_rendezvouses_on_loopback_with_a_port_from_the_kernel():
    launch = prepare({})
    assert launch.config.rdzv_backend == loopback.BACKEND
    assert launch.config.rdzv_endpoint == f"{loopback.ADDRESS}:0"
    assert launch.config.local_addr == loopback.ADDRESS
    assert launch.environment["GLOO_SOCKET_IFNAME"] == loopback.INTERFACE


def test_extra_torchrun_args_reach_torchrun():
    launch = prepare({}, ["--log-dir=/tmp/py-distributed-test-logs", "--tee", "3"])
    assert launch.argv[-7:-4] == ["--log-dir=/tmp/py-distributed-test-logs", "--tee", "3"]
    assert launch.config.logs_specs.root_log_dir == "/tmp/py-distributed-test-logs"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PET_VIRTUAL_LOCAL_RANK", "yes", "torchrun: invalid literal"),
        ("PET_MONITOR_INTERVAL", "x", "torchrun: argument --monitor-interval"),
        ("PET_LOCAL_RANKS_FILTER", "x", "torchrun: --local_ranks_filter must be"),
        ("PET_REDIRECTS", "9", "torchrun:"),
        ("PET_LOG_DIR", "/proc/forbidden", "log_dir='/proc/forbidden' (from --log-dir or"),
    ],
)
def test_bad_torchrun_values_are_usage_errors(monkeypatch, variable, value, message):
    flag = "--" + variable.removeprefix("PET_").lower().replace("_", "-")
    known = torch_run.get_args_parser()._option_string_actions
    monkeypatch.setenv(variable, value)
    if flag not in known:
        prepare(dict(os.environ))  # a torchrun without the flag (2.4) reads no such variable
        return
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        prepare(dict(os.environ))


@pytest.mark.parametrize("flag", ["-h", "--help", "--stand", "--no-py"])
def test_help_and_abbreviations_are_refused_in_torchrun_args(flag):
    with pytest.raises(UsageError):
        prepare({}, [flag])


def test_prepare_leaves_os_environ_alone_and_hands_the_workers_what_torch_wrote(monkeypatch):
    monkeypatch.setenv("PET_STANDALONE", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    launch = prepare(dict(os.environ))
    assert dict(os.environ) == before
    # Set for the workers (the CPUs shared among them), where torchrun would set it in os.environ.
    assert launch.environment["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    # The launcher owns how workers start: PET_STANDALONE neither reaches torchrun nor the workers.
    assert launch.config.run_id == resolved_run_id(launch)
    assert launch.environment["PET_STANDALONE"] is None


def resolved_run_id(launch):
    return next(f.split("=", 1)[1] for f in launch.argv if f.startswith("--rdzv-id="))


def loopback_handler(run_id):
    """The standalone backend's handler, as torch elastic creates it for torchrun's flags."""
    params = RendezvousParameters(
        backend=loopback.BACKEND,
        endpoint=f"{loopback.ADDRESS}:0",
        run_id=run_id,
        min_nodes=1,
        max_nodes=1,
        local_addr=loopback.ADDRESS,
    )
    return loopback._create_handler(params)


def test_loopback_rendezvous_listens_on_127_0_0_1_with_a_new_workers_store_each_round():
    handler = loopback_handler("unit")
    first = handler.next_rendezvous().bootstrap_store_info
    second = handler.next_rendezvous().bootstrap_store_info
    listening = listening_addresses([os.getpid()])
    assert {address for address, _ in listening} == {loopback.ADDRESS}
    handler.shutdown()
    if facilities.shares_agent_store():
        assert first.master_addr == second.master_addr == loopback.ADDRESS
        assert first.master_port != second.master_port
        assert (loopback.ADDRESS, second.master_port) in listening
    else:  # torch 2.4: rank 0's worker hosts the workers' store, and the launch says so
        standalone = prepare({})
        assert any("store is rank 0's, on every interface" in line for line in standalone.weaker)


def test_a_first_loopback_round_skips_torchs_skew_of_many_nodes(monkeypatch):
    delays = []

    def delay(seconds):
        delays.append(seconds)

    monkeypatch.setattr(dynamic_rendezvous, "_delay", delay)
    handler = loopback_handler("unit-skew")
    try:
        assert handler.next_rendezvous().world_size == 1
    finally:
        handler.shutdown()
    # torch waits a random 0 to 0.3 s, a range, before a first round.
    assert not [d for d in delays if isinstance(d, tuple)], delays
    assert dynamic_rendezvous._delay is delay


def test_a_c10d_job_across_nodes_runs_torchs_c10d_with_a_new_workers_store_each_round():
    with socket.socket() as probe:  # a port free a moment ago, for the chief's rendezvous store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {"PET_NNODES": "1:2", "PET_RDZV_ENDPOINT": f"127.0.0.1:{port}"}
    launch = prepare(environ)
    assert launch.config.rdzv_backend == rounds.BACKEND
    assert f"--rdzv-backend={rounds.BACKEND}" in launch.argv
    params = RendezvousParameters(
        backend=rounds.BACKEND,
        endpoint=launch.config.rdzv_endpoint,
        run_id="unit-rounds",
        min_nodes=1,
        max_nodes=1,  # one node, so that each round forms at once
        local_addr="127.0.0.1",
    )
    handler = rounds._create_handler(params)
    try:
        first = handler.next_rendezvous().bootstrap_store_info
        second = handler.next_rendezvous().bootstrap_store_info
        # Both stores, the chief's and the workers', on --local-addr alone.
        assert {address for address, _ in listening_addresses([os.getpid()])} == {"127.0.0.1"}
    finally:
        handler.shutdown()
    if facilities.shares_agent_store():  # torch 2.4: rank 0's worker makes one each round
        assert first.master_port != second.master_port


def test_the_loopback_rendezvous_keeps_torchs_polls(monkeypatch):
    delays = []
    monkeypatch.setattr(dynamic_rendezvous, "_delay", delays.append)
    with loopback._unskewed():
        dynamic_rendezvous._delay(seconds=(0, 0.3))
        dynamic_rendezvous._delay(seconds=1)
    assert delays == [1]


def test_of_nodes_on_one_machine_the_one_the_endpoint_names_hosts_the_store_there_alone():
    timeout = timedelta(seconds=5)
    chief = stores.hosted("127.0.0.1", 0, "127.0.0.1", timeout, None)
    assert chief is not None
    port = chief.port
    assert ("127.0.0.1", port) in listening_addresses([os.getpid()])
    # Another node here, of another loopback address, or of the same once the port is taken.
    assert stores.hosted("127.0.0.1", port, "127.0.0.2", timeout, None) is None
    assert stores.hosted("127.0.0.1", port, "127.0.0.1", timeout, None) is None
    # Kubeflow's chief is told `localhost`, and hosts it on its own address.
    assert stores._named("localhost", "10.1.2.3")
    assert not stores._named("10.1.2.4", "10.1.2.3")
