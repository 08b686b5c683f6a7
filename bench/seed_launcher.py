"""The seed's way of launching, for bench/launch.py: twitter/the-algorithm-ml's
common/run_training.py with `set_python_path_in_subprocess=True`.

The launcher imports torch, then runs torchrun in a subprocess with PYTHONPATH set from its own
sys.path, "to accommodate bazel stubbing": the workers are bare interpreters that find the Bazel
binary's imports through that variable. They run allreduce_once.py, which sits beside this file in
the runfiles. Usage: seed_launcher NPROC_PER_NODE. Unlike the seed, which drops it, the launcher
exits with torchrun's status, so that the benchmark can check the job succeeded.
"""

import os
import subprocess
import sys

import torch.distributed.run  # noqa: F401  the seed imports torch before it launches


def main() -> None:
    (nproc_per_node,) = sys.argv[1:]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "allreduce_once.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    torchrun += ["--nproc_per_node", nproc_per_node, "--standalone", script]
    env = {**os.environ, "PYTHONPATH": ":".join(sys.path)}
    sys.exit(subprocess.run(torchrun, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
