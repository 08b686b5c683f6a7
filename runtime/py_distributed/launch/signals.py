"""The launcher's signals: the stacks of every running rank before a stop, and preemption notices
passed on to the workers.

torch elastic takes the signals named in `LaunchConfig.signals_to_handle` (SIGTERM, SIGINT, SIGHUP
and SIGQUIT by default): its handler raises SignalException in the main thread, and the agent then
sends that signal to every worker, waits `shutdown_timeout` and SIGKILLs what is left. It installs
that handler each time workers start, over whatever was there, and offers no hook after that point:
a handler of ours installed before would be overwritten, and one installed after has no place to
run from. `handled` therefore uses torch elastic's own knob, `signals_to_handle`: it takes its
signals out of that list, installs its own handlers for them for the launch, and leaves the rest of
the list (SIGQUIT by default) to torch elastic.

- SIGTERM, SIGINT, SIGHUP (those of them in the list): every running worker writes the stacks of
  all its threads (`protocol.DUMP_SIGNAL`), the launcher prints them under each rank's label, then
  raises torch elastic's SignalException as its own handler would, so the agent's shutdown (death
  signal, grace, SIGKILL) and the launcher's exit status 128+N are torch elastic's, unchanged.
- SIGUSR1, SIGUSR2 (SLURM's `--signal`, `scancel --signal=USR1`): sent on to every running worker,
  and the launch goes on; the workers decide. A main with a handler checkpoints and goes on or
  exits; a worker without one dies by the default action and the job fails with that rank's code.
  torch elastic would stop the whole job for them instead, so they are always taken from its list.
"""

import contextlib
import copy
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from torch.distributed.elastic.multiprocessing import api as torch_processes
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.launcher.api import LaunchConfig

from py_distributed.launch import facilities, stacks
from py_distributed.launch.workers import Workers
from py_distributed.protocol import DUMP_SIGNAL

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

# torch elastic warns, with a traceback, of a signal name it cannot install, the empty one included.
_TORCH_FALLBACK = "SIGQUIT"
# What a new interpreter does on a signal that it does not leave to the default action.
_FRESH: dict[int, Callable[[int, FrameType | None], object] | int] = {
    signal.SIGINT: signal.default_int_handler
}


@contextlib.contextmanager
def handled(
    config: LaunchConfig, workers: Workers, *, name: str, stopping: Callable[[], None]
) -> Iterator[LaunchConfig]:
    """Handles the launcher's stop and preemption signals for the block, for the launch's
    `workers`, calling `stopping` first on a stop; yields the config to hand torch elastic, whose
    `signals_to_handle` no longer names them. The signal handlers as they were come back when the
    block ends. Outside the main thread, where signal handlers cannot be installed (torch elastic
    then warns that it cannot either), `config` is yielded unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield config
        return
    # A torch without the knob (2.4) takes SIGTERM, SIGINT, SIGHUP and SIGQUIT itself each time
    # workers start, over any handler of ours: it keeps them, and the launch shows no stacks.
    knob = "signals_to_handle" in facilities.launch_config_fields()
    listed = [part.strip() for part in config.signals_to_handle.split(",")] if knob else []
    stops = [sig for sig in STOP_SIGNALS if sig.name in listed and DUMP_SIGNAL is not None]
    taken = {sig.name for sig in (*stops, *FORWARDED_SIGNALS)}
    left_to_torch = ",".join(part for part in listed if part and part not in taken)
    previous = {sig: signal.getsignal(sig) for sig in (*stops, *FORWARDED_SIGNALS)}
    handlers = _Handlers(name, workers, stopping)
    told = copy.copy(config)  # not dataclasses.replace, which runs torch's CUDA probe again
    if knob:
        told.signals_to_handle = left_to_torch or _TORCH_FALLBACK
    try:
        for sig in stops:
            signal.signal(sig, handlers.stop)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, handlers.forward)
        yield told
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(sig, handler)


def forget_in_worker() -> None:
    """In a worker forked from the launcher: gives each signal that the launch handles, here or in
    torch elastic, the action it has in a new interpreter, as in a worker that torch elastic
    started with a command. Handlers of the program's own stay, as the rest of its state does."""
    launchers = (_Handlers.stop, _Handlers.forward, torch_processes._terminate_process_handler)
    for sig in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):  # not a signal Python may handle
            handler = signal.getsignal(sig)
            if getattr(handler, "__func__", handler) in launchers:
                signal.signal(sig, _FRESH.get(sig, signal.SIG_DFL))


@dataclass
class _Handlers:
    """The signal handlers of one launch."""

    name: str  # for messages
    workers: Workers
    stopping: Callable[[], None]  # told first (the other nodes stop too: no more liveness)
    stacks_shown: bool = False

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """Shows every running rank's stacks, then stops the launch as torch elastic's handler
        would. A second stop signal stops at once."""
        sigval = signal.Signals(signum)
        self.stopping()
        if not self.stacks_shown:
            self.stacks_shown = True
            try:
                self._show_stacks(sigval)
            except Exception as error:  # noqa: BLE001 - the stop goes on, whatever the stacks do
                _write(f"{self.name}: no stacks: {type(error).__name__}: {error}\n")
        raise SignalException(f"Process {os.getpid()} got signal: {sigval}", sigval=sigval)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """Sends the signal on to every running worker; the launch goes on."""
        workers = self.workers.running()
        for worker in workers:
            with contextlib.suppress(OSError):  # it has just ended: nothing to tell
                os.kill(worker.pid, signum)
        name = signal.Signals(signum).name
        _write(f"{self.name}: {name} sent on to {len(workers)} running workers\n")

    def _show_stacks(self, sigval: signal.Signals) -> None:
        heading = f"{sigval.name}: Python stacks of the {{count}} running workers on {{host}}"
        if text := stacks.collected(
            self.workers, self.name, f"{heading}, before they are stopped:"
        ):
            _write(text)


def _write(text: str) -> None:
    """Writes to the launcher's stderr by its descriptor: a signal handler may have interrupted
    the main thread inside sys.stderr, which would refuse a reentrant write."""
    data = text.encode(errors="replace")
    while data:
        data = data[os.write(2, data) :]
