"""Cluster discovery: which nodes make up this job and which one this is, from the environment.

A launcher runs once per node. Schedulers describe the job to it in their own variables; this module
reads them, in a fixed order, into one `Cluster`: explicit arguments, TF_CONFIG (the seed's format),
SLURM, Kubernetes (Kubeflow PyTorchJob, Trainer/JobSet), else a single machine. It only reads: which
address and interface this node uses is `node_address`'s business, what torchrun is told `config`'s.
"""

import dataclasses
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from py_distributed.errors import UsageError

# torchrun's default port of a c10d rendezvous endpoint (torch/distributed/run.py), used when a
# description names the chief without a port.
DEFAULT_PORT = 29400
# SLURM names no port: as Lightning does (environments/slurm.py), one per job from its id, so that
# two jobs sharing a node do not collide.
_SLURM_PORT_BASE = 15000
_SLURM_PORT_SPAN = 10000
# Inside `srun` the step's variables describe the nodes running this step, which may be fewer than
# the allocation's; a batch script has only the allocation's. Each list with its node count.
_SLURM_NODE_LISTS = (
    ("SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES"),
    ("SLURM_NODELIST", "SLURM_NNODES"),
    ("SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES"),
)
SINGLE_MACHINE = "single machine"


@dataclass(frozen=True)
class Machine:
    """One node of the job: its address as the other nodes reach it, and its accelerators."""

    address: str  # "" where the description does not say
    num_accelerators: int | None = None  # None where the description does not say


@dataclass(frozen=True)
class Cluster:
    """This job's nodes as its scheduler describes them; the seed's `machine_from_env()` value."""

    source: str  # where the description came from, for messages: "TF_CONFIG", "SLURM", ...
    chief: Machine  # node 0, which hosts the rendezvous
    num_workers: int  # the nodes besides the chief
    node_rank: int  # this node's place: 0 is the chief
    this_machine: Machine
    port: int | None = None  # the rendezvous port the description implies, if any
    job_id: str | None = None  # stable for the job's lifetime, so a restarted node rejoins

    @property
    def num_nodes(self) -> int:
        return 1 + self.num_workers

    @property
    def is_chief(self) -> bool:
        return self.node_rank == 0

    @property
    def described(self) -> bool:
        """Whether a scheduler's description (or explicit arguments) named the nodes."""
        return self.source != SINGLE_MACHINE


def single_machine(num_accelerators: int | None = None) -> Cluster:
    """The description of a job on this machine alone."""
    here = Machine("", num_accelerators)
    return Cluster(SINGLE_MACHINE, here, 0, 0, here)


def machine_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    chief: str | None = None,
    workers: Sequence[str] = (),
    node_rank: int | None = None,
    num_accelerators: int | None = None,
) -> Cluster:
    """This job's cluster: from explicit arguments, else from the first description in `environ`.

    Args:
      environ: the variables to read; default `os.environ`.
      chief: "HOST[:PORT]" of node 0; if given, the arguments describe the cluster and no
        variable is read.
      workers: "HOST[:PORT]" of the other nodes, in node order.
      node_rank: this node's index in [chief, *workers]; needed when there are workers.
      num_accelerators: accelerators per node, overriding what a description says.

    Raises:
      UsageError: a description is malformed; the message names the variable and the fix.
    """
    env = os.environ if environ is None else environ
    if chief is not None:
        found = _from_arguments(chief, workers, node_rank)
    else:
        found = next(_descriptions(env), None) or single_machine()
    if num_accelerators is None:
        return found
    return dataclasses.replace(
        found,
        chief=Machine(found.chief.address, num_accelerators),
        this_machine=Machine(found.this_machine.address, num_accelerators),
    )


def _descriptions(env: Mapping[str, str]) -> Iterator[Cluster]:
    if env.get("TF_CONFIG"):
        yield _from_tf_config(env["TF_CONFIG"])
    if any(env.get(variable) for variable, _ in _SLURM_NODE_LISTS):
        yield _from_slurm(env)
    if env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR"):
        found = _from_kubernetes(env)
        if found:
            yield found


def _cluster(
    source: str,
    addresses: Sequence[str],
    node_rank: int,
    *,
    job_id: str | None,
    port: int | None = None,
    num_accelerators: int | None = None,
) -> Cluster:
    """A cluster whose every node's "HOST[:PORT]" is known; the chief's port is the rendezvous'."""
    hosts, chief_port = [], port
    for index, address in enumerate(addresses):
        host, node_port = _split_host_port(address, source)
        hosts.append(host)
        if index == 0 and chief_port is None:
            chief_port = node_port
    return Cluster(
        source,
        Machine(hosts[0], num_accelerators),
        len(hosts) - 1,
        node_rank,
        Machine(hosts[node_rank], num_accelerators),
        chief_port,
        job_id,
    )


def _from_arguments(chief: str, workers: Sequence[str], node_rank: int | None) -> Cluster:
    nodes = [chief, *workers]
    if node_rank is None and workers:
        raise UsageError("machine_from_env(chief=..., workers=...) needs node_rank= of this node")
    rank = node_rank or 0
    if not 0 <= rank < len(nodes):
        raise UsageError(f"node_rank={rank} is not in 0..{len(nodes) - 1}: one per chief or worker")
    return _cluster("arguments", nodes, rank, job_id=_digest("job", nodes))


def _from_tf_config(text: str) -> Cluster:
    """TF_CONFIG: {"cluster": {"chief": ["h:p"], "worker": [...]}, "task": {"type", "index"}}."""

    def bad(fix: str) -> UsageError:
        return UsageError(f"TF_CONFIG: {fix}")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad(f"not JSON ({error.msg} at char {error.pos}); export one JSON object") from None
    if not isinstance(config, dict):
        raise bad('not a JSON object; use {"cluster": {...}, "task": {...}}')
    spec, task = config.get("cluster"), config.get("task")
    if not isinstance(spec, dict) or not isinstance(task, dict):
        raise bad('needs "cluster" and "task" objects')
    chief_role = "chief" if "chief" in spec else "master"  # "master": TF 1's name for the chief
    chief, workers = spec.get(chief_role), spec.get("worker", [])
    if not (isinstance(chief, list) and len(chief) == 1):
        raise bad('cluster needs "chief": ["HOST:PORT"], exactly one')
    if not (isinstance(workers, list) and all(isinstance(w, str) for w in [*chief, *workers])):
        raise bad('cluster "worker" must be a list of "HOST:PORT" strings')
    kind, index = task.get("type"), task.get("index", 0)
    roles = {chief_role: 1, "worker": len(workers)}
    if kind not in roles:
        raise bad(f"task type {kind!r} is not a torch node; use {chief_role!r} or 'worker'")
    if type(index) is not int or not 0 <= index < roles[kind]:
        raise bad(f"task index {index!r} is out of range for {roles[kind]} {kind}(s)")
    node_rank = index if kind == chief_role else 1 + index
    nodes = [*chief, *workers]
    return _cluster("TF_CONFIG", nodes, node_rank, job_id=_digest("tf", nodes))


def _from_slurm(env: Mapping[str, str]) -> Cluster:
    """SLURM: one launcher per node (`srun --ntasks-per-node=1`), the step's nodes in order."""
    variable, count_variable = next((v, c) for v, c in _SLURM_NODE_LISTS if env.get(v))
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
    node_rank = _index(node_id or "0", len(nodes), "SLURM_NODEID")
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    port = _slurm_port(job_id) if _is_number(job_id) else None
    if env.get("MASTER_PORT"):
        port = _port(env["MASTER_PORT"], "MASTER_PORT")
    gpus = env.get("SLURM_GPUS_ON_NODE", "")
    return _cluster(
        "SLURM",
        nodes,
        node_rank,
        job_id=f"slurm-{job_id}" if job_id else _digest("slurm", nodes),
        port=port,
        num_accelerators=int(gpus) if _is_number(gpus) else None,
    )


def _slurm_port(job_id: str) -> int:
    return _SLURM_PORT_BASE + int(job_id) % _SLURM_PORT_SPAN


def _from_kubernetes(env: Mapping[str, str]) -> Cluster | None:
    """Kubeflow: PyTorchJob sets MASTER_ADDR/PORT, PET_NNODES, PET_NODE_RANK and RANK (the node's)
    on every pod, MASTER_ADDR=localhost on the master's; older operators set WORLD_SIZE to the
    number of pods and no PET_NNODES. Trainer's JobSet sets PET_MASTER_ADDR/PORT, PET_NNODES and
    PET_NODE_RANK (kubeflow/trainer pkg/constants). None when no node count is given: then
    MASTER_ADDR is only torch's own variable, not a cluster description."""
    addr_var = "PET_MASTER_ADDR" if env.get("PET_MASTER_ADDR") else "MASTER_ADDR"
    count_var = next((v for v in ("PET_NNODES", "WORLD_SIZE") if env.get(v)), None)
    if count_var is None:
        return None
    count = _node_count(env[count_var], count_var)
    rank_vars = ("PET_NODE_RANK", "RANK", "JOB_COMPLETION_INDEX")
    rank_var = next((v for v in rank_vars if env.get(v)), None)
    if rank_var is None and count > 1:
        raise UsageError(
            f"{count_var}={env[count_var]!r} but no PET_NODE_RANK, RANK or JOB_COMPLETION_INDEX"
            " says which node this is; set PET_NODE_RANK"
        )
    node_rank = _index(env[rank_var], count, rank_var) if rank_var else 0
    port_var = "PET_MASTER_PORT" if env.get("PET_MASTER_PORT") else "MASTER_PORT"
    port = _port(env[port_var], port_var) if env.get(port_var) else None
    chief = Machine(_split_host_port(env[addr_var], addr_var)[0])
    # Pods know only the chief's address (the chief's own: localhost); node_address finds theirs.
    here = chief if node_rank == 0 else Machine("")
    # The chief's address differs between pods: only what they all share names the run.
    job_id = _digest("k8s", [str(port), str(count)])
    return Cluster("Kubernetes", chief, count - 1, node_rank, here, port, job_id)


def _node_count(value: str, variable: str) -> int:
    """N; for PET_NNODES also MIN:MAX (an elastic PyTorchJob), of which the largest job counts."""
    bounds = value.split(":") if variable == "PET_NNODES" else [value]
    numbers = [int(b) for b in bounds if _is_number(b) and int(b) > 0]
    if len(numbers) == len(bounds) <= 2 and numbers[0] <= numbers[-1]:
        return numbers[-1]
    form = "N or MIN:MAX" if variable == "PET_NNODES" else "N"
    raise UsageError(f"{variable}={value!r}: use a number of nodes as {form}, with 0 < MIN <= MAX")


_RANGE = re.compile(r"\[([^\[\]]*)\]")


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
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def _numbers(ranges: str, text: str, variable: str) -> Iterator[str]:
    for item in ranges.split(","):
        low, _, high = item.partition("-")
        if not (_is_number(low) and _is_number(high or low) and int(low) <= int(high or low)):
            raise UsageError(f"{variable}={text!r}: cannot read range {item!r}; use N or N-M")
        for number in range(int(low), int(high or low) + 1):
            yield str(number).zfill(len(low))  # "01-10" keeps its zero padding


# A host name or IPv4 address, as in rules/private/py_distributed_binary.bzl's endpoint grammar.
HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _split_host_port(address: str, variable: str) -> tuple[str, int | None]:
    """ "host", "host:port", "v6", "[v6]", "[v6]:port" -> (host, port or None)."""
    host, port, rest = address, None, ""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
    elif address.count(":") == 1:
        host, _, rest = address.partition(":")
        rest = ":" + rest
    if rest:
        if not rest.startswith(":"):
            raise UsageError(f"{variable}: cannot read {address!r}; use HOST:PORT or [IPv6]:PORT")
        port = _port(rest[1:], variable)
    if not (HOST_NAME.fullmatch(host) or _is_ipv6(host)):
        raise UsageError(f"{variable}: cannot read host of {address!r}; use HOST or HOST:PORT")
    return host, port


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdecimal() takes other scripts' digits, which no scheduler writes."""
    return text.isascii() and text.isdecimal()


def _port(value: str, variable: str) -> int:
    if not (_is_number(value) and 0 < int(value) <= 65535):
        raise UsageError(f"{variable}={value!r}: use a port in 1..65535")
    return int(value)


def _index(value: str, count: int, variable: str) -> int:
    if not (_is_number(value) and int(value) < count):
        raise UsageError(f"{variable}={value!r}: use an int in 0..{count - 1}")
    return int(value)


def _digest(prefix: str, parts: Sequence[str]) -> str:
    """A run id all nodes derive alike from what they share; torch elastic puts it in file names."""
    return f"{prefix}-{hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:16]}"
