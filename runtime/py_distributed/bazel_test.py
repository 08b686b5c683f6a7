"""Bazel's test protocol, spoken by the launcher of a py_distributed_test.

`bazel test` hands a test TEST_TMPDIR, TEST_UNDECLARED_OUTPUTS_DIR and XML_OUTPUT_FILE (Bazel's
test encyclopedia). The ranks are torch elastic's workers, so only the launcher sees them all: it
keeps every temporary file under TEST_TMPDIR (a sandbox may share the host's /tmp, and a remote
worker may have no TMPDIR at all), copies each rank's output into the undeclared outputs, and
writes one JUnit testcase per rank, failed with its own error. Where the variables are absent
(`bazel run` of a test target) it is a plain launch.
"""

import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from py_distributed.launch import pipeline
from py_distributed.launch.root_cause import Outcome

_ATTEMPT = re.compile(r"attempt_(\d+)")


def hang_timeout() -> str:
    """A test's hang timeout where BUILD gives none: a third of its TEST_TIMEOUT, so that a hang
    in its first two thirds is reported before Bazel stops the test; "" (off) outside Bazel."""
    seconds = os.environ.get("TEST_TIMEOUT", "")
    return str(int(seconds) / 3) if seconds.isdecimal() and int(seconds) > 0 else ""


def gpu_wait() -> str:
    """How long a test waits for its GPUs where PY_DISTRIBUTED_GPU_WAIT does not say: half of its
    TEST_TIMEOUT, so that a test that could not get them says so before Bazel stops it, with time
    left to run; "" (the binary's default) outside Bazel."""
    seconds = os.environ.get("TEST_TIMEOUT", "")
    return str(int(seconds) / 2) if seconds.isdecimal() and int(seconds) > 0 else ""


def launch(job: pipeline.Job) -> int:
    """Runs `job` as a Bazel test and returns its exit status, as `pipeline.launch` does.

    Sets TMPDIR to TEST_TMPDIR for the rest of this process, which ends with the test, and so
    for its workers.
    """
    if test_tmpdir := os.environ.get("TEST_TMPDIR"):
        os.environ["TMPDIR"] = tempfile.tempdir = test_tmpdir
    outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", "")
    xml_file = os.environ.get("XML_OUTPUT_FILE", "")
    started = time.monotonic()

    def observe(outcome: Outcome) -> None:
        logs = rank_logs(outcome.log_dir)
        if outputs:
            copy_logs(logs, Path(outputs))
        if xml_file:
            last = {rank: files for (_, rank), files in sorted(logs.items())}
            suite = junit(job.name, outcome, last, time.monotonic() - started)
            ET.ElementTree(suite).write(xml_file, encoding="utf-8", xml_declaration=True)

    return pipeline.launch(job, observe=observe)


# (attempt, local rank) -> {"stdout": path, "stderr": path}
RankLogs = Mapping[tuple[int, int], Mapping[str, Path]]


def rank_logs(log_dir: str) -> RankLogs:
    """The workers' output files in torchrun's log directory, by attempt and local rank."""
    found: dict[tuple[int, int], dict[str, Path]] = {}
    if not log_dir:
        return found
    for path in Path(log_dir).glob("*/attempt_*/*/std*.log"):
        attempt = _ATTEMPT.fullmatch(path.parent.parent.name)
        if attempt and path.parent.name.isdecimal():
            key = (int(attempt[1]), int(path.parent.name))
            found.setdefault(key, {})[path.stem] = path
    return found


def copy_logs(logs: RankLogs, outputs: Path) -> None:
    """Each rank's output as `rank<R>.stdout.log`, `rank<R>.stderr.log` in `outputs`; the output of
    attempts before the last (after restarts) as `attempt<N>.rank<R>.*`."""
    last = max((attempt for attempt, _ in logs), default=0)
    outputs.mkdir(parents=True, exist_ok=True)
    for (attempt, rank), files in logs.items():
        prefix = "" if attempt == last else f"attempt{attempt}."
        for stream, path in files.items():
            shutil.copyfile(path, outputs / f"{prefix}rank{rank}.{stream}.log")


def junit(
    name: str, outcome: Outcome, logs: Mapping[int, Mapping[str, Path]], seconds: float
) -> ET.Element:
    """A JUnit testsuite with one testcase per rank, each failed with its own error: the root
    cause's traceback, how each other failed rank ended, or why the job stopped."""
    suite = ET.Element("testsuite", name=name, time=f"{seconds:.3f}")
    if not outcome.local_workers:  # a bad input: no rank started, its line is in the test log
        case = ET.SubElement(suite, "testcase", name="launch", classname=name)
        ET.SubElement(case, "failure", message=f"no rank started (exit {outcome.exit_code})")
    failed = {failure.local_rank: failure for failure in outcome.failures}
    root_cause = outcome.failures[0].local_rank if outcome.failures else None
    for rank in range(outcome.local_workers):
        case = ET.SubElement(
            suite, "testcase", name=f"rank {rank}", classname=name, time=f"{seconds:.3f}"
        )
        if failure := failed.get(rank):
            cause = "root cause: " if rank == root_cause else ""
            detail = f": {failure.summary}" if failure.summary else ""
            message = f"{cause}rank {rank} {failure.status}{detail}"
            ET.SubElement(case, "failure", message=message).text = failure.traceback or message
        elif outcome.exit_code:  # stopped with the job: a signal, a failed rendezvous
            message = f"stopped with the job (exit {outcome.exit_code}); see the test log"
            ET.SubElement(case, "failure", message=message)
        for stream, tag in (("stdout", "system-out"), ("stderr", "system-err")):
            if path := logs.get(rank, {}).get(stream):
                ET.SubElement(case, tag).text = path.read_text(encoding="utf-8", errors="replace")
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
    suite.set("errors", "0")
    return suite
