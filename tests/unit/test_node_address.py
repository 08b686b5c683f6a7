"""Which address and interface a node of a multi-node job uses, on the real interfaces here."""

import json

import pytest

from py_distributed import config, node_address
from py_distributed.cluster import machine_from_env
from py_distributed.errors import UsageError

ONE = machine_from_env({})


def test_local_addr_given_is_kept_and_its_interface_found():
    assert node_address.find(ONE, "ignored", "127.0.0.1") == node_address.NodeAddress(
        "127.0.0.1", "lo"
    )


def test_the_descriptions_address_for_this_node_is_resolved_to_its_interface():
    described = machine_from_env(chief="localhost:1", workers=["192.0.2.7:1"], node_rank=0)
    assert node_address.find(described, "localhost", "").interface == "lo"


def test_an_address_this_machine_does_not_hold_names_the_description_and_the_fix():
    described = machine_from_env(chief="192.0.2.7:1", workers=["192.0.2.8:1"], node_rank=1)
    with pytest.raises(UsageError) as error:
        node_address.find(described, "192.0.2.7", "")
    assert str(error.value).startswith(
        "arguments gives this node (rank 1) the address '192.0.2.8', which no interface of this"
        " machine holds (192.0.2.8); check this node's rank"
    )


def test_a_name_that_does_not_resolve_is_an_error():
    with pytest.raises(UsageError, match=r"'no-such-host\.invalid', which does not resolve"):
        node_address.find(ONE, "x", "no-such-host.invalid")


def test_without_an_address_of_its_own_a_node_takes_the_route_to_the_rendezvous_host():
    assert node_address.find(ONE, "127.0.0.1", "") == node_address.NodeAddress("127.0.0.1", "lo")


def test_multi_node_config_pins_local_addr_and_socket_interface():
    env = {
        "TF_CONFIG": json.dumps({
            "cluster": {"chief": ["127.0.0.1:29400"], "worker": ["192.0.2.8:29400"]},
            "task": {"type": "chief", "index": 0},
        })
    }  # fmt: skip
    resolved = config.for_this_node({"nproc_per_node": "1"}, "BUILD", [], env)
    assert (resolved.local_addr, resolved.socket_ifname) == ("127.0.0.1", "lo")
    assert "--local-addr=127.0.0.1" in resolved.argv()
    assert "--rdzv-endpoint=localhost:29400" in resolved.argv()
