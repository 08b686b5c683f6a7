"""Which address and interface a node of a multi-node job uses, on the real interfaces here."""

import json
import socket

import psutil
import pytest

from py_distributed.cluster import machine_from_env
from py_distributed.errors import UsageError
from py_distributed.settings import config, node_address

ONE = machine_from_env({})


def an_address_of_this_machine() -> tuple[str, str]:
    """(address, interface) of an IPv4 address off loopback that this machine holds."""
    held = [
        (entry.address, name)
        for name, entries in psutil.net_if_addrs().items()
        for entry in entries
        if entry.family == socket.AF_INET and not entry.address.startswith("127.")
    ]
    assert held, "these tests need an IPv4 address off loopback"
    return held[0]


def test_local_addr_given_is_kept_and_its_interface_found():
    assert node_address.find(ONE, "ignored", "127.0.0.1") == node_address.NodeAddress(
        "127.0.0.1", "lo"
    )


def test_the_descriptions_address_for_this_node_is_resolved_to_its_interface():
    address, interface = an_address_of_this_machine()
    described = machine_from_env(chief=f"{address}:1", workers=["198.51.100.7:1"], node_rank=0)
    assert node_address.find(described, "localhost", "") == node_address.NodeAddress(
        address, interface
    )


def test_a_chief_described_as_localhost_takes_its_host_names_address(monkeypatch):
    # Kubeflow gives the master pod MASTER_ADDR=localhost; a pod's host name resolves to its IP.
    address, interface = an_address_of_this_machine()
    monkeypatch.setattr(socket, "gethostname", lambda: address)
    pod = machine_from_env({"MASTER_ADDR": "localhost", "PET_NNODES": "2", "PET_NODE_RANK": "0"})
    assert node_address.find(pod, "localhost", "") == node_address.NodeAddress(address, interface)


def test_a_described_node_with_nothing_but_loopback_is_told_to_set_local_addr(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")
    pod = machine_from_env({"MASTER_ADDR": "localhost", "PET_NNODES": "2", "PET_NODE_RANK": "0"})
    with pytest.raises(UsageError) as error:
        node_address.find(pod, "localhost", "")
    assert str(error.value) == (
        "cannot tell at which address the other nodes reach this one: Kubernetes gives it"
        " 'localhost', the route to 'localhost' and the host name 'localhost' lead to loopback;"
        " set PET_LOCAL_ADDR to this node's address"
    )


def test_an_address_this_machine_does_not_hold_names_the_description_and_the_fix():
    described = machine_from_env(chief="198.51.100.7:1", workers=["198.51.100.8:1"], node_rank=1)
    with pytest.raises(UsageError) as error:
        node_address.find(described, "198.51.100.7", "")
    assert str(error.value).startswith(
        "arguments gives this node (rank 1) the address '198.51.100.8', which no interface of this"
        " machine holds (198.51.100.8); check this node's rank"
    )


def test_a_name_that_does_not_resolve_is_an_error():
    with pytest.raises(UsageError, match=r"'no-such-host\.invalid', which does not resolve"):
        node_address.find(ONE, "x", "no-such-host.invalid")


def test_without_a_description_a_loopback_rendezvous_keeps_every_node_on_loopback():
    assert node_address.find(ONE, "127.0.0.1", "") == node_address.NodeAddress("127.0.0.1", "lo")


def test_a_worker_node_known_only_by_its_chief_takes_the_route_to_the_rendezvous_host():
    address, interface = an_address_of_this_machine()
    pod = machine_from_env({"MASTER_ADDR": address, "PET_NNODES": "2", "PET_NODE_RANK": "1"})
    assert node_address.find(pod, address, "") == node_address.NodeAddress(address, interface)


def test_multi_node_config_pins_local_addr_and_socket_interface():
    address, interface = an_address_of_this_machine()
    env = {
        "TF_CONFIG": json.dumps({
            "cluster": {"chief": [f"{address}:29400"], "worker": ["198.51.100.8:29400"]},
            "task": {"type": "chief", "index": 0},
        })
    }  # fmt: skip
    cluster = machine_from_env(env)
    resolved = config.resolve({"nproc_per_node": "1"}, "BUILD", [], env, cluster)
    resolved = node_address.pinned(resolved, cluster, env)
    assert (resolved.local_addr, resolved.socket_ifname) == (address, interface)
    assert resolved.rdzv_endpoint == "localhost:29400"
