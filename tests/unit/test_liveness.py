"""The watch on a round's nodes (launch/liveness.py) and the first failure across nodes
(launch/first_failure.py), on a real store where they use one."""

import time
from datetime import timedelta

from torch.distributed import TCPStore

from py_distributed.launch import first_failure, liveness, rounds

DEADLINE = 0.4


class Sight:
    """What a handler would have read: set by the test."""

    def __init__(self):
        self.beats = {"me": 0, "peer": 0, "chief": 0}
        self.read_at = time.monotonic()

    def synced(self):
        return self.read_at

    def heartbeats(self):
        return dict(self.beats)

    def closed(self):
        return False


def round_of(sight):
    nodes = {
        "peer": liveness.Node(1, "10.0.0.2", range(2, 4)),
        "chief": liveness.Node(0, "10.0.0.1", range(0, 2)),
    }
    return liveness.Round(sight, nodes, "10.0.0.1:29400", nodes["chief"], DEADLINE)


def beat(sight, *nodes):
    sight.read_at = time.monotonic()
    for node in nodes:
        sight.beats[node] += 1


def test_a_node_whose_heartbeat_stops_is_lost_after_the_deadline_the_others_not():
    sight = Sight()
    watched = round_of(sight)
    lost = None
    started = time.monotonic()
    while lost is None and time.monotonic() - started < 5 * DEADLINE:
        time.sleep(DEADLINE / 8)
        beat(sight, "chief")  # the store answers; the peer's heartbeat never changes again
        lost = watched.look()
    assert lost and lost.node.node_rank == 1 and not lost.store, lost
    assert DEADLINE <= time.monotonic() - started < 2 * DEADLINE
    assert lost.line() == "node rank 1 at 10.0.0.2 (ranks 2-3) was lost: no keep-alive for 0 s"


def test_a_silent_store_is_found_as_such_not_as_silent_nodes():
    sight = Sight()
    watched = round_of(sight)
    found = []
    for _ in range(int(3 * DEADLINE / 0.05)):
        time.sleep(0.05)  # nothing is read: the store is frozen
        if loss := watched.look():
            found.append(loss)
            break
    (loss,) = found
    assert loss.store == "10.0.0.1:29400" and loss.node.node_rank == 0
    assert "its host, node rank 0 at 10.0.0.1 (ranks 0-1), is down" in loss.line()


def test_a_node_that_stood_still_itself_blames_nobody_when_it_resumes():
    sight = Sight()
    watched = round_of(sight)
    watched.look()
    time.sleep(2 * DEADLINE)  # as if this node were stopped: nothing looked, nothing read
    assert watched.look() is None
    beat(sight, "chief", "peer")
    assert watched.look() is None


def test_gloo_names_the_peer_whose_connection_closed():
    error = (
        "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by"
        " peer [10.0.0.3]:23265. This is typically caused by a remote worker crashing."
    )
    assert first_failure._closed_by(error, "10.0.0.3")
    assert not first_failure._closed_by(error, "10.0.0.30")
    assert not first_failure._closed_by("ValueError: 10.0.0.3", "10.0.0.3")


def posted(when, what, address):
    return first_failure.Posted(when, what, 7 if "7" in what else 1, address)


def test_every_node_names_the_earliest_failure_posted_in_the_store():
    server = TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5))
    boards = [rounds._Board(server, "job", 3, rank, 3) for rank in range(3)]
    echo = posted(2_000, "rank 0 exited with code 1", "10.0.0.1")
    cause = posted(1_000, "rank 3 exited with code 7", "10.0.0.2")
    boards[1].post(cause.text())
    boards[1].post(posted(500, "a second post", "10.0.0.2").text())  # changes nothing
    started = time.monotonic()
    found, others = first_failure.first(boards[0], echo, wait=0.5)
    # Node 2 never posts: node 0 waits its 0.5 s, then takes what it has.
    assert 0.5 <= time.monotonic() - started < 2
    assert found == cause and others == {"10.0.0.2"}
    # The next round's board is another.
    assert rounds._Board(server, "job", 4, 0, 3).read() == []


def test_a_board_whose_store_is_gone_leaves_the_nodes_own_failure():
    class Gone:
        nodes = 2

        def post(self, text):
            raise RuntimeError("Connection reset by peer")

        def read(self):
            raise AssertionError("not reached")

    mine = posted(1, "rank 0 exited with code 1", "10.0.0.1")
    assert first_failure.first(Gone(), mine) == (mine, set())
