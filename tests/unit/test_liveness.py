"""The watch on a round's nodes (launch/liveness.py) and the first failure across nodes
(launch/first_failure.py), on a real store where they use one."""

import time
from datetime import timedelta

from torch.distributed import TCPStore

from py_distributed.launch import first_failure, liveness, rounds

DEADLINE = 15.0


class Clock:
    """time.monotonic, moved by the test."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Sight:
    """What a handler would have read: set by the test."""

    def __init__(self, clock):
        self.beats = {"me": 0, "peer": 0, "chief": 0}
        self.read_at = clock()
        self.is_closed = False
        self.clock = clock

    def synced(self):
        return self.read_at

    def heartbeats(self):
        return dict(self.beats)

    def closed(self):
        return self.is_closed

    def beat(self, *nodes):
        self.read_at = self.clock()
        for node in nodes:
            self.beats[node] += 1


def watched():
    clock = Clock()
    sight = Sight(clock)
    nodes = {
        "peer": liveness.Node(1, "10.0.0.2", range(2, 4)),
        "chief": liveness.Node(0, "10.0.0.1", range(0, 2)),
    }
    return (
        clock,
        sight,
        liveness.Round(sight, nodes, "10.0.0.1:29400", nodes["chief"], DEADLINE, clock),
    )


def test_a_node_whose_heartbeat_stops_is_lost_after_the_deadline_the_others_not():
    clock, sight, round_ = watched()
    for _ in range(15):  # 15 s: the store answers every second; the peer beats until 0
        clock.now += 1
        sight.beat("chief")
        assert round_.look() is None
    clock.now += 1
    sight.beat("chief")
    lost = round_.look()
    assert lost and lost.node.node_rank == 1 and not lost.store, lost
    assert lost.line() == "node rank 1 at 10.0.0.2 (ranks 2-3) was lost: no keep-alive for 16 s"


def test_a_heartbeat_that_changes_keeps_its_node_whatever_time_it_says():
    clock, sight, round_ = watched()
    for second in range(60):
        clock.now += 1
        sight.beat("chief", *(["peer"] if second % 5 == 0 else []))  # every 5 s, as torch's
        assert round_.look() is None


def test_a_silent_store_is_found_as_such_not_as_silent_nodes():
    clock, _, round_ = watched()
    found = None
    for _ in range(20):  # nothing is read: the store is frozen
        clock.now += 1
        found = found or round_.look()
    assert found.store == "10.0.0.1:29400" and found.node.node_rank == 0
    assert "its host, node rank 0 at 10.0.0.1 (ranks 0-1), is down" in found.line()


def test_a_closed_rendezvous_is_no_loss():
    clock, sight, round_ = watched()
    sight.is_closed = True  # a node ended, and closed it: the others end too
    for _ in range(30):
        clock.now += 1
        assert round_.look() is None


def test_a_node_that_stood_still_itself_blames_nobody_when_it_resumes():
    clock, sight, round_ = watched()
    round_.look()
    clock.now += 60  # this node was stopped: nothing looked, nothing read
    assert round_.look() is None
    clock.now += 1
    sight.beat("chief", "peer")
    assert round_.look() is None


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
    found, others = first_failure.first(boards[0], echo, 0.5)
    # Node 2 never posts: node 0 waits its 0.5 s, then takes what it has.
    assert 0.5 <= time.monotonic() - started < 2
    assert found == cause and others == {"10.0.0.2"}
    # A node that closed gloo's connections and posted nothing crashed: it is the root cause.
    echo = first_failure.Posted(3_000, "rank 2 exited with code 1", 1, "10.0.0.3",
                                "Connection closed by peer [10.0.0.9]:23265")  # fmt: skip
    board = rounds._Board(server, "job", 5, 2, 3)  # a round where it is the first post
    found = first_failure.root_cause(board, echo, 0.5, None, {"10.0.0.9": "node rank 9"}, "")
    assert found.what.startswith("node rank 9 was lost: it closed its connections"), found
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
    assert first_failure.first(Gone(), mine, 5) == (mine, None)
    # Out of reach from the start: the store's host is the one lost, not a node gloo names.
    echo = first_failure.Posted(
        1, "rank 0 exited with code 1", 1, "10.0.0.1", "Connection closed by peer [10.0.0.3]:1"
    )
    labels = {"10.0.0.3": "node rank 2"}
    found = first_failure.root_cause(Gone(), echo, 5, None, labels, "node rank 0 was lost")
    assert found.what == "node rank 0 was lost"


def test_a_board_whose_store_stopped_answering_is_left_after_the_wait():
    class Frozen:
        nodes = 2

        def post(self, *_):
            time.sleep(3600)  # a frozen store's reply that never comes

        read = done = read_by = post

    mine = posted(1, "rank 0 exited with code 1", "10.0.0.1")
    started = time.monotonic()
    assert first_failure.first(Frozen(), mine, 0.5) == (mine, None)
    assert time.monotonic() - started < 3
