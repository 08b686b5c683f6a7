"""A minimal REAPI worker on the Remote Workers (Bots) API, as tests/rbe's executor.

No REAPI worker can be installed here (BuildGrid ships none; buildbox, Buildbarn and NativeLink
are in no registry this project reaches), so this is one, doing to an action what real workers
do: a fresh directory staged from CAS, argv run there with exactly the Command's environment
(nothing of the worker's own), outputs, stdout and stderr uploaded, the ActionResult returned in
the lease. Each action gets a line in a JSON-lines journal, the tests' proof that it ran here.

Runs under BuildGrid's virtualenv (Python 3.13), whose package holds the protos and CAS client:
  bots_worker.py --remote grpc://127.0.0.1:PORT --workdir DIR --journal FILE --ready FILE
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import (
    bots_pb2,
    bots_pb2_grpc,
    worker_pb2,
)
from buildgrid._protos.google.rpc import code_pb2, status_pb2
from buildgrid.server.client.cas import download, upload
from buildgrid.server.utils.digests import create_digest

# An idle bot's UpdateBotSession returns when a lease comes, or after 80% of this deadline; a busy
# bot's returns at once (`bots-long-poll-during-execution: false` in buildgrid.yml), so it polls.
LONG_POLL_S = 30.0
BUSY_POLL_S = 0.2
# On an action's timeout its process group gets SIGTERM, as from Bazel's local test runner, then
# SIGKILL after this grace: py_distributed_test's launcher dumps every rank's stacks meanwhile.
GRACE_S = 10.0


class Worker:
    def __init__(self, args: argparse.Namespace, channel: grpc.Channel) -> None:
        self.args = args
        self.channel = channel
        self.bot_id = f"tests-rbe-{os.getpid()}"
        self.bots = bots_pb2_grpc.BotsStub(channel)
        self.pool = ThreadPoolExecutor(max_workers=args.capacity)
        self.lock = threading.Lock()
        self.running: dict[str, bots_pb2.Lease] = {}  # lease id -> lease, ACTIVE
        self.done: dict[str, bots_pb2.Lease] = {}  # lease id -> lease, COMPLETED, to report
        self.groups: set[int] = set()  # process groups of the actions running now
        self.count = 0

    def create_session(self) -> bots_pb2.BotSession:
        """Creates the bot session, retrying while the server starts."""
        device = worker_pb2.Device(handle="local")
        for key, value in (p.split("=", 1) for p in self.args.property):
            device.properties.add(key=key, value=value)
        worker = worker_pb2.Worker(devices=[device])
        worker.configs.add(key="capacity", value=str(self.args.capacity))
        session = bots_pb2.BotSession(bot_id=self.bot_id, status=bots_pb2.OK, worker=worker)
        request = bots_pb2.CreateBotSessionRequest(parent=self.args.instance, bot_session=session)
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.bots.CreateBotSession(request, timeout=5)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def serve(self) -> None:
        session = self.create_session()
        Path(self.args.ready).write_text(session.name, encoding="utf-8")
        while True:
            with self.lock:
                reported = list(self.done.values())
                del session.leases[:]
                session.leases.extend([*self.running.values(), *reported])
                busy = bool(self.running)
            request = bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session)
            try:
                session = self.bots.UpdateBotSession(request, timeout=LONG_POLL_S)
            except grpc.RpcError as error:  # a slow answer on a loaded machine: say it all again
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                continue
            with self.lock:
                for lease in reported:
                    del self.done[lease.id]
                for lease in session.leases:  # a lease that ended during the call is in done
                    known = lease.id in self.running or lease.id in self.done
                    if lease.state == bots_pb2.ACTIVE and not known:
                        self.running[lease.id] = lease
                        self.pool.submit(self.run_lease, lease)
            if busy:
                time.sleep(BUSY_POLL_S)

    def run_lease(self, lease: bots_pb2.Lease) -> None:
        try:
            result, timed_out = self.execute(lease)
            code = code_pb2.DEADLINE_EXCEEDED if timed_out else code_pb2.OK
            status = status_pb2.Status(code=code)
        except Exception as error:  # noqa: BLE001 - the service must hear of any failure
            result, status = None, status_pb2.Status(code=code_pb2.INTERNAL, message=repr(error))
        with self.lock:
            finished = self.running.pop(lease.id)
            finished.state = bots_pb2.COMPLETED
            finished.status.CopyFrom(status)
            if result is not None:
                finished.result.Pack(result)
            self.done[lease.id] = finished

    def execute(self, lease: bots_pb2.Lease) -> tuple[re_pb2.ActionResult, bool]:
        """Runs the lease's action in a fresh input root; returns its result and if it timed out."""
        action = re_pb2.Action()
        lease.payload.Unpack(action)
        with self.lock:
            self.count += 1
            root = Path(self.args.workdir, str(self.count))
        started = time.time()
        with download(self.channel, instance=self.args.instance) as cas:
            command = cas.get_message(action.command_digest, re_pb2.Command())
            cas.download_directory(action.input_root_digest, str(root))
        cwd = root / command.working_directory
        outputs = list(command.output_paths) or [*command.output_files, *command.output_directories]
        for output in outputs:  # REAPI: the worker creates each output's parent directory
            (cwd / output).parent.mkdir(parents=True, exist_ok=True)
        env = {variable.name: variable.value for variable in command.environment_variables}
        streams = root.with_suffix(".out"), root.with_suffix(".err")
        with open(streams[0], "w+b") as out, open(streams[1], "w+b") as err:
            proc = subprocess.Popen(
                command.arguments, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
            )
            with self.lock:
                self.groups.add(proc.pid)
            timed_out = False
            try:
                proc.wait(timeout=action.timeout.seconds or None)
            except subprocess.TimeoutExpired:
                timed_out = True
                signal_group(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=GRACE_S)
            finally:
                signal_group(proc.pid, signal.SIGKILL)  # whatever the action left, as a sandbox
                proc.wait()
                with self.lock:
                    self.groups.discard(proc.pid)
            result = re_pb2.ActionResult(exit_code=proc.returncode)
            with upload(self.channel, instance=self.args.instance) as cas:
                for output in outputs:
                    path = cwd / output
                    if path.is_dir():
                        tree = cas.upload_tree(str(path), queue=True)
                        result.output_directories.add(path=output, tree_digest=tree)
                    elif path.is_file():
                        digest = cas.upload_file(str(path), queue=True)
                        executable = os.access(path, os.X_OK)
                        result.output_files.add(
                            path=output, digest=digest, is_executable=executable
                        )
                for stream, field in ((out, result.stdout_digest), (err, result.stderr_digest)):
                    stream.seek(0)
                    field.CopyFrom(cas.put_blob(stream))
                cas.flush()
        shutil.rmtree(root)
        for stream_path in streams:
            stream_path.unlink()
        result.execution_metadata.worker = self.bot_id
        self.journal(
            {
                "lease": lease.id,
                "action_digest": "{0.hash}/{0.size_bytes}".format(
                    create_digest(action.SerializeToString())
                ),
                "argv": list(command.arguments),
                "environment": env,
                "platform": {p.name: p.value for p in command.platform.properties},
                "exit_code": proc.returncode,
                "timed_out": timed_out,
                "duration_s": round(time.time() - started, 3),
                "output_files": sorted(f.path for f in result.output_files),
                "output_directories": sorted(d.path for d in result.output_directories),
            }
        )
        return result, timed_out

    def journal(self, entry: dict[str, object]) -> None:
        with self.lock, open(self.args.journal, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(entry, sort_keys=True) + "\n")

    def stop(self) -> None:
        """Kills the running actions' process groups (from a signal handler, so without the lock:
        the main thread may hold it); the service forgets this bot by itself."""
        for group in list(self.groups):
            signal_group(group, signal.SIGKILL)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", required=True, help="grpc://HOST:PORT of the Bots service")
    parser.add_argument("--instance", default="", help="REAPI instance name")
    parser.add_argument("--workdir", required=True, help="where each action's input root is staged")
    parser.add_argument("--journal", required=True, help="JSON lines, one per action run")
    parser.add_argument("--ready", required=True, help="written once the bot session exists")
    parser.add_argument("--capacity", type=int, default=2, help="actions at a time")
    parser.add_argument(
        "--property", action="append", default=[], help="KEY=VALUE, a platform property offered"
    )
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    worker = Worker(args, grpc.insecure_channel(args.remote.removeprefix("grpc://")))

    def terminate(signum: int, _frame: object) -> None:
        worker.stop()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    worker.serve()


if __name__ == "__main__":
    main()
