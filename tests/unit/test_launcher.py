"""The launcher's checks before any worker starts, and the loopback rendezvous, in-process."""

import os

import pytest
from procfs import listening_addresses
from torch.distributed.elastic.rendezvous import RendezvousParameters

from py_distributed import config, launcher, loopback
from py_distributed.cluster import single_machine
from py_distributed.config import LOOPBACK
from py_distributed.entry import StubEntry
from py_distributed.errors import UsageError

BUILD = {"nproc_per_node": "2"}
ENTRY = StubEntry("/bin/true", {})


def prepare(environ, torchrun_args=()):
    resolved = config.resolve(BUILD, "BUILD", torchrun_args, environ, single_machine())
    return launcher.prepare(resolved, ENTRY, ["--", "a"])


def test_user_arguments_are_passed_untouched_even_a_leading_double_dash():
    launch = prepare({})
    assert launch.entrypoint == "/bin/true"
    assert launch.entrypoint_args[-2:] == ["--", "a"]
    assert launch.argv[-3:] == ["/bin/true", "--", "a"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PET_VIRTUAL_LOCAL_RANK", "yes", "torchrun: invalid literal"),
        ("PET_MONITOR_INTERVAL", "x", "torchrun: argument --monitor-interval"),
        ("PET_RDZV_CONF", "join_timeout=0", "join_timeout=0: use a positive number"),
        ("PET_RDZV_CONF", "keep_alive_interval=-1", "keep_alive_interval=-1"),
    ],
)
def test_bad_torchrun_values_are_usage_errors(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(UsageError, match=message):
        prepare(dict(os.environ))


@pytest.mark.parametrize("flag", ["-h", "--help", "--stand", "--no-py"])
def test_help_and_abbreviations_are_refused_in_torchrun_args(flag):
    with pytest.raises(UsageError):
        prepare({}, [flag])


def test_owned_pet_variables_are_dropped(monkeypatch):
    monkeypatch.setenv("PET_STANDALONE", "1")
    launch = prepare({})
    assert "PET_STANDALONE" not in os.environ
    assert launch.config.run_id == launch.environment["PY_DISTRIBUTED_RUN_ID"]


def test_loopback_rendezvous_listens_on_127_0_0_1_with_a_new_workers_store_each_round():
    params = RendezvousParameters(
        backend=loopback.STANDALONE_BACKEND,
        endpoint="127.0.0.1:0",
        run_id="unit",
        min_nodes=1,
        max_nodes=1,
        local_addr="127.0.0.1",
    )
    handler = loopback._create_handler(params)
    first = handler.next_rendezvous().bootstrap_store_info
    second = handler.next_rendezvous().bootstrap_store_info
    assert first.master_addr == second.master_addr == "127.0.0.1"
    assert first.master_port != second.master_port
    listening = listening_addresses([os.getpid()])
    assert (LOOPBACK, second.master_port) in listening
    assert {address for address, _ in listening} == {LOOPBACK}
    handler.shutdown()
