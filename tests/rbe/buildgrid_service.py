"""A real REAPI service on loopback for tests/rbe: BuildGrid (from PyPI, in the virtualenv
.venv/buildgrid that tools/setup.sh makes with Python 3.13), its scheduler on Debian's PostgreSQL
reached over a unix socket (no TCP listener), and bots_worker.py as its one worker.

Run alone, it stands the service up until Ctrl-C and prints the flags for `bazel test`:
  python tests/rbe/buildgrid_service.py
"""

import contextlib
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, when run alone
from harness.procfs import listening_addresses, processes_with_env  # noqa: E402

BUILDGRID = HERE.parents[1] / ".venv" / "buildgrid" / "bin"
STEP_TIMEOUT_S = 60  # for each step of the bring-up
# In the environment of every process started here, to find any of them left after the stop.
MARKER = "TESTS_RBE_SERVICE"
# The platform property the worker offers: a pool, as GPU workers form one. A job asking for
# another pool waits for a worker that offers it (//tests/rbe:pool_test asks for this one).
POOL = ("Pool", "tests-rbe")


@dataclass(frozen=True)
class Service:
    remote: str  # grpc://127.0.0.1:PORT, for --remote_executor
    journal: Path  # bots_worker.py's record, one JSON line per action it ran
    psql: list[str]  # psql on the scheduler's database

    def actions(self) -> list[dict[str, Any]]:
        """The worker's journal, in the order the actions finished."""
        if not self.journal.exists():
            return []
        lines = self.journal.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def query(self, sql: str) -> list[list[str]]:
        """The rows of `sql` on the scheduler's database: the service's own record."""
        done = _check([*self.psql, "-AtF", "\t", "-c", sql])
        return [line.split("\t") for line in done.stdout.splitlines()]


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Service]:
    """PostgreSQL, BuildGrid and a worker in the pool POOL, all under `workdir`.

    On exit each is stopped by pid (its process group: PostgreSQL's backends, the actions the
    worker runs); a process still alive after that is killed, and named in a RuntimeError.
    """
    if not (BUILDGRID / "bgd").exists():
        raise RuntimeError(f"no BuildGrid in {BUILDGRID.parent}: run tools/setup.sh")
    postgres_bin = _postgres_bin()
    workdir.chmod(0o755)  # the postgres user walks through it to its own directory
    pg = workdir / "postgres"
    pg.mkdir()
    shutil.chown(pg, "postgres", "postgres")
    env = {**os.environ, MARKER: str(workdir)}
    as_postgres: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []}
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: Sequence[str | Path], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        procs.append(proc)
        return proc

    try:
        initdb = [postgres_bin / "initdb", "-D", pg / "data", "-U", "postgres", "-A", "trust"]
        _check([*initdb, "--no-sync"], cwd=pg, env=env, **as_postgres)
        no_tcp = ["-c", "listen_addresses=", "-c", f"unix_socket_directories={pg}"]
        postgres = [postgres_bin / "postgres", "-D", pg / "data", *no_tcp, "-c", "fsync=off"]
        start(postgres, pg / "log", cwd=pg, **as_postgres)
        database = ["-h", str(pg), "-U", "postgres"]
        isready = [str(postgres_bin / "pg_isready"), "-q", *database]
        _wait("PostgreSQL", lambda: subprocess.run(isready, check=False).returncode == 0, procs)
        _check([postgres_bin / "createdb", *database, "buildgrid"])
        url = f"postgresql+psycopg://postgres@/buildgrid?host={pg}"
        _check([BUILDGRID / "bgd", "migrate", "apply", url], env=env)

        config = workdir / "buildgrid.yml"
        template = string.Template((HERE / "buildgrid.yml").read_text(encoding="utf-8"))
        config.write_text(template.substitute(address="127.0.0.1:0", database=url))
        server = start([BUILDGRID / "bgd", "server", "start", config], workdir / "bgd.log")
        _wait("BuildGrid", lambda: bool(listening_addresses([server.pid])), procs)
        ((_, port),) = listening_addresses([server.pid])

        remote = f"grpc://127.0.0.1:{port}"
        journal, ready = workdir / "journal.jsonl", workdir / "worker.ready"
        worker = [BUILDGRID / "python", HERE / "bots_worker.py", "--remote", remote]
        worker += ["--workdir", workdir / "actions", "--journal", journal, "--ready", ready]
        worker += ["--property", "=".join(POOL)]
        start(worker, workdir / "worker.log")
        _wait("the worker's bot session", ready.exists, procs)
        psql = [str(postgres_bin / "psql"), *database, "buildgrid"]
        yield Service(remote=remote, journal=journal, psql=psql)
    finally:
        for proc in reversed(procs):  # the worker, BuildGrid, then PostgreSQL
            _stop(proc)
        survivors = leftovers(workdir)
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if survivors:
        raise RuntimeError(f"processes left after the service stopped, now killed: {survivors}")


def leftovers(workdir: Path) -> list[int]:
    """Pids of the processes started here, or by an action staged under `workdir`, still alive."""
    pids = set(processes_with_env(MARKER, str(workdir)))
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, or a kernel thread
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(workdir):
                pids.add(int(proc.name))
    return sorted(pids - {os.getpid()})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group that `proc` leads, SIGKILL after 15 s; waits for `proc`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _postgres_bin() -> Path:
    """The bin directory of the newest PostgreSQL server Debian installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if not found:
        raise RuntimeError("no PostgreSQL server in /usr/lib/postgresql: run tools/setup.sh")
    return found[-1].parent


def _check(cmd: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
        **kwargs,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {done.returncode}: {done.stderr}")
    return done


def _wait(what: str, ready: Callable[[], bool], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not ready():
        if exited := [proc.args for proc in procs if proc.poll() is not None]:
            raise RuntimeError(f"{what} is not ready: {exited} exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} is not ready after {STEP_TIMEOUT_S} s")
        time.sleep(0.1)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tests-rbe-"))
    try:
        with running(workdir) as service, contextlib.suppress(KeyboardInterrupt):
            print(f"bazel test --config=rbe --remote_executor={service.remote} //...", flush=True)
            print(f"the worker's journal: {service.journal}; Ctrl-C stops it all", flush=True)
            signal.pause()
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
