"""What the launcher finds of this torch (launch.facilities): the oldest torch it takes, and one
line for each facility it uses that this torch lacks, whichever torch runs the tests."""

import pytest
from torch.distributed import run as torch_run

from py_distributed.errors import UsageError
from py_distributed.launch import facilities
from py_distributed.settings.config import TorchrunConfig


@pytest.mark.parametrize("found", ["2.3.1", "1.13.0+cu117", "2.0.0a0"])
def test_a_torch_older_than_2_4_is_one_line_naming_both_versions(found):
    with pytest.raises(UsageError) as raised:
        facilities.check_minimum(found)
    assert str(raised.value) == (
        f"torch {found} is older than 2.4, the oldest the launcher supports; install torch>=2.4"
    )


@pytest.mark.parametrize("found", ["2.4.0", "2.4.1+cu121", "2.15.0", "3.0.0.dev20270101", ""])
def test_2_4_and_newer_pass_and_so_does_a_torch_pip_did_not_install(found):
    facilities.check_minimum(found)


def test_the_installed_torch_passes():
    facilities.check_minimum()


def test_one_line_for_each_facility_this_torch_lacks_and_none_for_those_it_has():
    flags = torch_run.get_args_parser()._option_string_actions.keys()
    config = TorchrunConfig(
        "2", 1, 1, 0, "c10d", "", None, "id", "keep_alive_interval=9", standalone=True
    )
    lines = facilities.weaker(flags, config, 5)
    lacks = {
        "no --shutdown-timeout": "--shutdown-timeout" not in flags,
        "no LaunchConfig.signals_to_handle": "signals_to_handle"
        not in facilities.launch_config_fields(),
        "no shared agent store": not facilities.shares_agent_store(),
        "keep_alive_interval and keep_alive_max_attempt are ignored": (
            not facilities.takes_keep_alive()
        ),
    }
    assert {text for text in lacks if any(text in line for line in lines)} == {
        text for text, missing in lacks.items() if missing
    }
    assert all(line.startswith(f"torch {facilities.version()}: ") for line in lines)
    assert len(lines) == sum(lacks.values())


def test_a_multi_node_job_is_told_of_its_node_address_not_of_loopback():
    multi = TorchrunConfig("2", 2, 2, 0, "c10d", "chief", 29400, "id", "", standalone=False)
    lines = [line for line in facilities.weaker(set(), multi, 5) if "store" in line]
    assert not any("loopback" in line for line in lines)
    if not facilities.shares_agent_store():  # torch 2.4
        assert any("not the launcher's on this node's address" in line for line in lines)
    static = TorchrunConfig("2", 2, 2, 0, "static", "chief", 29400, "id", "", standalone=False)
    assert not any("store" in line for line in facilities.weaker(set(), static, 5))
