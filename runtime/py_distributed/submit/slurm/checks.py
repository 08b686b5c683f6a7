"""The checks before anything is queued: each bad value one UsageError, which names it and the fix.

A job that cannot run should fail here, in a second, rather than wait in the queue and then fail on
every node, or wait there for good. `prepare` makes the checks that need no SLURM, which
`--dry-run` makes too: the binary's torchrun settings and the job's environment (PET_*) against its
node count, by `config.resolve`, the very check each node's launcher will make; the working
directory's name; the runfiles tree and the working directory on file systems the nodes share
(`shared_fs`). `check_with_slurm` makes those that ask SLURM: its commands on PATH, and the
partition's node count, MaxNodes and MaxTime (`check_partition`, from scontrol's answer).
"""

import os
import re
import shutil
from collections.abc import Mapping, Sequence

from py_distributed import grammar
from py_distributed.cluster import Cluster, slurm
from py_distributed.errors import UsageError
from py_distributed.runfiles_env import enclosing_runfiles_dir
from py_distributed.settings import build, config, sources
from py_distributed.submit.slurm import shared_fs
from py_distributed.submit.slurm.client import Client
from py_distributed.submit.slurm.request import Job, Options, job_environment, time_seconds


def prepare(
    options: Options, settings: str, shim: str, environ: Mapping[str, str]
) -> tuple[Job, dict[str, str]]:
    """The job and sbatch's environment, once every check that needs no SLURM passed."""
    found_tree = enclosing_runfiles_dir(shim)
    if found_tree is None:
        raise UsageError(
            f"{shim} is in no runfiles tree, which the nodes need: build without"
            " --nobuild_runfile_links"
        )
    # Its real path: the nodes need not have the convenience links (bazel-bin) that lead to it.
    tree = os.path.realpath(found_tree)
    job_env = job_environment(environ, tree, options)
    binary = build.read(os.path.join(tree, settings))
    nodes = options.nodes or _nnodes_default(binary.values, job_env)
    try:
        # The check each node's launcher will make, with the node count SLURM will describe.
        config.resolve(binary.values, "BUILD", binary.torchrun_args, job_env, _described(nodes))
    except UsageError as error:
        raise UsageError(f"--nodes={nodes}: {error}") from None
    workdir = environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
    if re.search(r"[\s%\\]", workdir):
        raise UsageError(
            f"working directory {workdir!r}: sbatch's file names cannot hold whitespace, '%' or"
            " '\\'; run from another directory"
        )
    logs = os.path.join(workdir, "slurm-" + binary.target.rpartition(":")[2].replace("/", "_"))
    _check_shared([*shared_fs.runfiles_paths(tree), workdir], options.shared_fs)
    stub_path = os.path.join(tree, binary.stub)
    job = Job(
        binary.target,
        stub_path,
        options.args,
        nodes,
        options.partition,
        options.time,
        workdir,
        logs,
    )
    return job, job_env


def _nnodes_default(build_values: Mapping[str, str], environ: Mapping[str, str]) -> int:
    """The most nodes the binary's nnodes allows (PET_NNODES, then BUILD), else 1."""
    given = sources.given(build_values, "BUILD", environ, _described(1))
    try:
        return grammar.nnodes(given["nnodes"])[1]
    except ValueError as error:
        raise given.bad("nnodes", str(error)) from None


def _described(nodes: int) -> Cluster:
    """The cluster description each launcher of a job on `nodes` nodes will read, as seen by the
    first (any job id: it only picks the rendezvous port)."""
    step = {
        "SLURM_STEP_NODELIST": f"n[1-{nodes}]",
        "SLURM_STEP_NUM_NODES": str(nodes),
        "SLURM_STEP_ID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "1",
    }
    described = slurm.from_env(step)
    assert described is not None  # a node list is set
    return described


def _check_shared(paths: Sequence[str], declared: Sequence[str]) -> None:
    """The nodes run the binary from its runfiles tree, at the path it has here, and write to the
    working directory: each of `paths` must be on a file system they all mount."""
    found = shared_fs.unshared(paths, declared, shared_fs.mounts())
    if found:
        path, mount = found
        raise UsageError(
            f"{path} is on {mount.fstype} mounted at {mount.point}, not a network file system:"
            " the nodes run the binary from its runfiles tree and write to the working directory;"
            " put both on a shared file system (bazel --output_user_root=DIR for the tree), or"
            f" pass --shared-fs={mount.point} if every node mounts it at this path"
        )


def check_with_slurm(
    options: Options, nodes: int, environ: Mapping[str, str], client: Client
) -> None:
    """SLURM's commands on the job's PATH (scancel only where the submitter follows the job),
    then the partition against the job."""
    for command in ("sbatch", "scontrol") + (("scancel",) if options.wait else ()):
        if shutil.which(command, path=environ.get("PATH")) is None:
            raise UsageError(
                f"{command} is not on PATH: submit from a host with SLURM's client commands"
                " (a login node)"
            )
    check_partition(options, nodes, client.partitions(), environ)


def check_partition(
    options: Options,
    nodes: int,
    partitions: Mapping[str, Mapping[str, str]],
    environ: Mapping[str, str],
) -> None:
    """The node count and time limit against what the partition allows (scontrol's fields of each
    partition, by name); SLURM would otherwise queue the job for good (reason PartitionNodeLimit
    or PartitionTimeLimit). Of several partitions, one that admits the job is enough."""
    names, source = options.partition, "--partition"
    if not names and environ.get("SBATCH_PARTITION"):
        names, source = environ["SBATCH_PARTITION"], "SBATCH_PARTITION"
    known = ", ".join(sorted(partitions)) or "none"
    if names:
        unknown = [n for n in names.split(",") if n not in partitions]
        if unknown:
            raise UsageError(f"{source}={names!r}: no partition {unknown[0]}; use one of {known}")
        chosen = [partitions[n] for n in names.split(",")]
    else:
        chosen = [p for p in partitions.values() if p.get("Default") == "YES"]
        if not chosen:
            raise UsageError(
                f"the cluster has no default partition: pass --partition, one of {known}"
            )
    limit = options.time or environ.get("SBATCH_TIMELIMIT", "")
    seconds = (
        time_seconds(limit, "--time" if options.time else "SBATCH_TIMELIMIT") if limit else None
    )
    problems = [_misfit(p, nodes, seconds) for p in chosen]
    if all(problems):
        raise UsageError(
            f"--nodes={nodes}" + (f" --time={limit}" if limit else "") + f": {problems[0]}"
        )


def _misfit(partition: Mapping[str, str], nodes: int, seconds: int | None) -> str:
    """Why a job of `nodes` nodes and `seconds` cannot run in `partition`; "" if it can."""
    name = partition["PartitionName"]
    total = int(partition.get("TotalNodes", "0"))
    if nodes > total:
        return f"partition {name} has {total} nodes; ask for at most {total}"
    most = partition.get("MaxNodes", "UNLIMITED")
    if grammar.is_number(most) and nodes > int(most):
        return f"partition {name} allows at most {most} nodes per job (MaxNodes)"
    allowed = partition.get("MaxTime", "UNLIMITED")
    allowed_seconds = time_seconds(allowed, f"MaxTime of {name}")
    if seconds is not None and allowed_seconds is not None and seconds > allowed_seconds:
        return f"partition {name} allows at most {allowed} (MaxTime)"
    return ""
