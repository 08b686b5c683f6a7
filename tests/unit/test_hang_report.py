"""The hang report (launch/hangs.py), from the progress the workers write (worker/progress.py)."""

import pytest

from py_distributed.errors import UsageError
from py_distributed.launch import hangs
from py_distributed.settings import checks


def progress(rank, **groups):
    """A rank's progress: for each group name, (enqueued, completed, ranks, desc)."""
    return {
        "rank": rank,
        "time_ns": 0,
        "groups": {
            name: {"enqueued": e, "completed": c, "ranks": r, "desc": d}
            for name, (e, c, r, d) in groups.items()
        },
    }


def test_a_rank_waiting_in_a_subgroups_collective_names_the_member_it_waits_for():
    # Ranks 0-3 in the world; ranks 2 and 3 in subgroup "1". Rank 2 waits in the subgroup's #4,
    # rank 3 has not reached it; ranks 0 and 1 compute, in no collective.
    world = ([0, 1, 2, 3], "default_pg")
    sub = ([2, 3], "pipeline")
    ranks = {
        0: progress(0, **{"0": (9, 9, *world)}),
        1: progress(1, **{"0": (9, 9, *world)}),
        2: progress(2, **{"0": (9, 9, *world), "1": (4, 3, *sub)}),
        3: progress(3, **{"0": (9, 9, *world), "1": (3, 3, *sub)}),
    }
    in_flight = {2: [{"group": "1", "desc": "pipeline", "seq": 4, "op": "broadcast"}]}
    assert hangs.waiting(ranks)
    assert hangs.report(ranks, in_flight, 61.2) == [
        "hang: no collective completed on any rank for 61 s, while ranks wait:",
        "  rank 0: not in a collective",
        "  rank 1: not in a collective",
        "  rank 2: in broadcast #4 of group 1 (pipeline, ranks 2-3)",
        "  rank 3: not in a collective",
        "  waiting for rank 3: rank 2 waits in #4 of group 1 (pipeline, ranks 2-3)",
    ]


def test_ranks_computing_with_nobody_waiting_is_no_hang():
    ranks = {r: progress(r, **{"0": (5, 5, [0, 1], "default_pg")}) for r in (0, 1)}
    assert not hangs.waiting(ranks)
    moved = {**ranks, 1: progress(1, **{"0": (6, 6, [0, 1], "default_pg")})}
    assert hangs.completed(moved) != hangs.completed(ranks)


@pytest.mark.parametrize("text", ["-1", "soon", "inf", "nan"])
def test_a_bad_hang_timeout_is_one_line_naming_where_it_came_from(text):
    variable = {"PY_DISTRIBUTED_HANG_TIMEOUT": text}
    with pytest.raises(UsageError, match=rf"hang_timeout='{text}' \(from PY_DISTRIBUTED_HANG_T"):
        checks.hang_timeout("60", "BUILD", variable)
    with pytest.raises(UsageError, match=rf"hang_timeout='{text}' \(from BUILD\): use a number"):
        checks.hang_timeout(text, "BUILD", {})


def test_the_variable_wins_over_build_and_none_is_off():
    assert checks.hang_timeout("60", "BUILD", {"PY_DISTRIBUTED_HANG_TIMEOUT": "0"}) == 0
    assert checks.hang_timeout("60", "BUILD", {"PY_DISTRIBUTED_HANG_TIMEOUT": ""}) == 60
    assert checks.hang_timeout("", "BUILD", {}) == 0
