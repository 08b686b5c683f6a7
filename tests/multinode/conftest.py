"""The simulated hosts of the multi-node tests (tests/harness/netns.py)."""

import pytest
from harness import netns
from harness.bazel import wait_for


def simulated(count, **options):
    """`count` simulated hosts; afterwards none of their processes is left."""
    with netns.hosts(count, **options) as hosts:
        yield hosts
        assert wait_for(lambda: not any(h.pids() for h in hosts), timeout=15), "processes left"


@pytest.fixture
def cluster(request, built):
    """`request.param` hosts whose host name resolves to loopback, as on many machines."""
    yield from simulated(request.param)


@pytest.fixture
def pods(built):
    """Two hosts whose host name resolves to their own address, as a Kubernetes pod's does."""
    yield from simulated(2, pod_hostnames=True)
