"""TF_CONFIG, the seed's cluster description: every node's HOST:PORT and this node's role in it.

{"cluster": {"chief": ["h:p"], "worker": [...]}, "task": {"type", "index"}}. A job that ran under
TensorFlow's launchers keeps its scheduler configuration; the chief's port is the rendezvous'.
"""

import json
from collections.abc import Mapping

from py_distributed.cluster._description import Cluster, cluster, digest
from py_distributed.errors import UsageError


def from_env(env: Mapping[str, str]) -> Cluster | None:
    """The cluster TF_CONFIG describes; None where it is unset or empty."""
    text = env.get("TF_CONFIG")
    return _from_text(text) if text else None


def _from_text(text: str) -> Cluster:
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
    return cluster("TF_CONFIG", nodes, node_rank, job_id=digest("tf", nodes))
