"""A rank's progress in its collectives, for the launcher's hang timeout: a daemon thread that,
while the launcher asks for it (PROGRESS_ENV), reads torch's flight recorder once per interval and
writes what it says to the rank's progress file (`protocol.progress_file`).

torch's flight recorder records every collective of every process group, gloo's included (torch
2.11 and later: `_dump_fr_trace_json`), and its `pg_status` holds, for each group, the sequence
number of the last collective enqueued and of the last completed. Read without its entries it
costs a fraction of a millisecond, and the thread runs while the main thread waits in a collective
(gloo and NCCL release the GIL there). Asked for more (a request file beside the progress file),
it writes the collectives in flight, with their ops, which cost more to read.

It imports nothing of torch: until the user's code has imported torch.distributed and joined a
group, there is nothing to read, and a worker that never does costs nothing.
"""

import json
import os
import sys
import threading
import time
from typing import Any

from py_distributed.protocol import in_flight_file, progress_file, write_json

# A progress file unchanged for this long is written again, so that a stale one means a rank whose
# thread no longer runs (its process stopped, or C++ holding the GIL).
_REWRITE_SECONDS = 10.0


def start(directory: str, interval: float) -> None:
    """Starts the thread, writing this process's files in `directory` every `interval` seconds."""
    thread = threading.Thread(
        target=_watch, args=(directory, os.getpid(), interval), name="progress", daemon=True
    )
    thread.start()


def _watch(directory: str, pid: int, interval: float) -> None:
    written: dict[str, Any] | None = None
    written_at = 0.0
    request = f"{in_flight_file(directory, pid)}.request"
    while True:
        time.sleep(interval)
        try:
            dump = _dump(entries=False)
        except Exception:  # noqa: BLE001 - a recorder this torch lacks, or off: nothing to say
            continue
        if dump is None:
            continue
        groups = _groups(dump)
        now = time.monotonic()
        if groups != written or now - written_at > _REWRITE_SECONDS:
            rank = int(os.environ.get("RANK", "-1"))
            progress = {"rank": rank, "time_ns": time.time_ns(), "groups": groups}
            write_json(progress_file(directory, pid), progress)
            written, written_at = groups, now
        if os.path.exists(request):
            write_json(in_flight_file(directory, pid), _in_flight(_dump(entries=True) or {}))
            os.unlink(request)


def _dump(*, entries: bool) -> dict[str, Any] | None:
    """The flight recorder's dump, None before this process has joined a group."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    c10d = sys.modules["torch._C._distributed_c10d"]
    dumped = json.loads(c10d._dump_fr_trace_json(includeCollectives=entries))
    return dumped if isinstance(dumped, dict) else None


def _groups(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each process group's description, members and sequence numbers, by its name."""
    c10d = sys.modules["torch.distributed.distributed_c10d"]
    by_name = {name: group for group, name in c10d._world.pg_names.items()}
    groups = {}
    for name, status in dump.get("pg_status", {}).items():
        group = by_name.get(name)
        groups[name] = {
            "desc": getattr(group, "group_desc", "") if group is not None else "",
            "ranks": c10d.get_process_group_ranks(group) if group is not None else [],
            "enqueued": int(status.get("last_enqueued_collective", -1)),
            "completed": int(status.get("last_completed_collective", -1)),
        }
    return groups


def _in_flight(dump: dict[str, Any]) -> list[dict[str, Any]]:
    """The collectives not yet retired: group, description, sequence number and op."""
    return [
        {
            "group": str(entry["process_group"][0]),
            "desc": str(entry["process_group"][1]),
            "seq": int(entry["collective_seq_id"]),
            "op": str(entry["profiling_name"]).rpartition(":")[2],
            "since_ns": int(entry.get("time_created_ns", 0)),
        }
        for entry in dump.get("entries", [])
        if not entry.get("retired", True) and not entry.get("is_p2p", False)
    ]
