"""SLURM: the job's nodes from its compressed host list, this node from SLURM_NODEID.

One launcher runs per node (`srun --ntasks-per-node=1`), in a job step: a multi-node batch script
that starts it without srun is refused. SLURM names no port, so the job gets one from its id, and
its host lists have their own range syntax, expanded here as `scontrol show hostnames` does.
"""

import re
from collections.abc import Iterator, Mapping

from py_distributed import grammar
from py_distributed.cluster._description import Cluster, cluster, digest, index, parsed
from py_distributed.errors import UsageError

# As Lightning does (environments/slurm.py), one port per job from its id, so that two jobs sharing
# a node do not collide.
_PORT_BASE = 15000
_PORT_SPAN = 10000
# Inside `srun` the step's variables describe the nodes running this step, which may be fewer than
# the allocation's; a batch script has only the allocation's. Each list with its node count.
_NODE_LISTS = (
    ("SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES"),
    ("SLURM_NODELIST", "SLURM_NNODES"),
    ("SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES"),
)
_RANGE = re.compile(r"\[([^\[\]]*)\]")


def from_env(env: Mapping[str, str]) -> Cluster | None:
    """The cluster of this job step; None outside SLURM (no node list is set)."""
    variable, count_variable = next(((v, c) for v, c in _NODE_LISTS if env.get(v)), ("", ""))
    if not variable:
        return None
    nodes = expand_hostlist(env[variable], variable)
    expected = env.get(count_variable)
    if expected and expected != str(len(nodes)):
        raise UsageError(
            f"{variable}={env[variable]!r} names {len(nodes)} nodes, {count_variable} says"
            f" {expected}; start the launcher with srun, which sets both"
        )
    local_id = env.get("SLURM_LOCALID", "0")
    if local_id != "0":
        raise UsageError(
            f"SLURM_LOCALID={local_id!r}: several launchers on one node; start one per node with"
            " `srun --ntasks-per-node=1`, and set nproc_per_node for the workers"
        )
    node_id = env.get("SLURM_NODEID", "")
    if not node_id and len(nodes) > 1:
        raise UsageError(
            f"SLURM_NODEID is unset but {variable} names {len(nodes)} nodes: start one launcher"
            " per node with `srun --ntasks-per-node=1`"
        )
    node_rank = index(node_id or "0", len(nodes), "SLURM_NODEID")
    if len(nodes) > 1 and not (env.get("SLURM_STEP_ID") or env.get("SLURM_STEP_NODELIST")):
        # A batch script runs once, on the allocation's first node, with the job's variables and
        # SLURM_NODEID=0 but in no step of its own: slurmstepd sets SLURM_STEP_ID only for a step id
        # that reads as an int >= 0 (the batch step's, SLURM_BATCH_SCRIPT, does not), and srun sets
        # SLURM_STEP_NODELIST for its steps (src/common/env.c: setup_env, env_array_for_step; 22.05
        # to 25.11). Started there, this launcher would be a chief alone, waiting out its join
        # timeout for nodes that nothing starts.
        raise UsageError(
            f"{variable} names {len(nodes)} nodes but SLURM_STEP_ID and SLURM_STEP_NODELIST are"
            " unset: this runs outside any job step (a batch script without srun); start one"
            " launcher per node with `srun --ntasks-per-node=1 ...`"
        )
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    port = _PORT_BASE + int(job_id) % _PORT_SPAN if grammar.is_number(job_id) else None
    if env.get("MASTER_PORT"):
        port = parsed(grammar.port, env["MASTER_PORT"], "MASTER_PORT")
    gpus = env.get("SLURM_GPUS_ON_NODE", "")
    return cluster(
        "SLURM",
        nodes,
        node_rank,
        job_id=f"slurm-{job_id}" if job_id else digest("slurm", nodes),
        port=port,
        num_accelerators=int(gpus) if grammar.is_number(gpus) else None,
    )


def expand_hostlist(text: str, variable: str = "SLURM_JOB_NODELIST") -> list[str]:
    """SLURM's compressed host list: "gpu[01-03,7],cpu-a[1-2]-b" -> gpu01 gpu02 gpu03 gpu7 ..."""
    hosts: list[str] = []
    for name in _split_top_level(text):
        match = _RANGE.search(name)
        if match is None:
            if not name or "[" in name or "]" in name:
                raise UsageError(f"{variable}={text!r}: cannot read host {name!r}")
            hosts.append(name)
            continue
        head, tail = name[: match.start()], name[match.end() :]
        for number in _numbers(match[1], text, variable):
            hosts.extend(expand_hostlist(head + number + tail, variable))
    if not hosts:
        raise UsageError(f"{variable}={text!r}: no hosts in it")
    return hosts


def _split_top_level(text: str) -> Iterator[str]:
    """Splits at commas outside brackets."""
    depth, start = 0, 0
    for position, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield text[start:position]
            start = position + 1
    yield text[start:]


def _numbers(ranges: str, text: str, variable: str) -> Iterator[str]:
    for item in ranges.split(","):
        low, _, high = item.partition("-")
        high = high or low
        if not (grammar.is_number(low) and grammar.is_number(high) and int(low) <= int(high)):
            raise UsageError(f"{variable}={text!r}: cannot read range {item!r}; use N or N-M")
        for number in range(int(low), int(high) + 1):
            yield str(number).zfill(len(low))  # "01-10" keeps its zero padding
