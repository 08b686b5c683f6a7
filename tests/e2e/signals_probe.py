"""A torchrun script for tests/e2e/test_signals.py: each rank says it is ready, then waits in
`wait_for_preemption` while a helper thread waits in `helper_thread_waits`, names the stacks of a
stopped job must show.

It writes $PROBE_DIR/rank<N>.ready once waiting. With PROBE_CHECKPOINT=1, SIGUSR1 makes each rank
write $PROBE_DIR/checkpoint<N> and return (exit 0), as a checkpoint-on-preemption handler would;
without it, the rank has no handler and SIGUSR1/SIGUSR2 end it by their default action.
"""

import os
import signal
import threading

# As a real job's main does: a rank stopped by SIGINT then records its KeyboardInterrupt through
# torch's error handler at once, instead of importing torch first, which takes seconds.
import torch  # noqa: F401
from harness import probe


def main() -> None:
    rank = os.environ["RANK"]
    preempted = threading.Event()
    if os.environ.get("PROBE_CHECKPOINT") == "1":

        def checkpoint(signum: int, frame: object) -> None:
            probe.write_text(f"checkpoint{rank}", signal.Signals(signum).name)
            preempted.set()

        signal.signal(signal.SIGUSR1, checkpoint)
    threading.Thread(target=helper_thread_waits, args=(preempted,), daemon=True).start()
    probe.write_text(f"rank{rank}.ready", str(os.getpid()))
    wait_for_preemption(preempted)


def wait_for_preemption(preempted: threading.Event) -> None:
    while not preempted.wait(0.1):  # short waits: the main thread runs signal handlers between
        pass


def helper_thread_waits(preempted: threading.Event) -> None:
    preempted.wait()


if __name__ == "__main__":
    main()
