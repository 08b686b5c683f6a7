"""Runs //tests/e2e:allreduce inside `bazel test`'s sandbox: RUNFILES_DIR only, loopback only."""

import json
import os
import subprocess
import sys
import unittest

from runfiles import runfiles


class AllreduceInSandboxTest(unittest.TestCase):
    def test_two_ranks_allreduce_inside_the_sandbox(self) -> None:
        r = runfiles.Create()
        assert r is not None
        binary = r.Rlocation("rules_py_distributed/tests/e2e/allreduce", source_repo="")
        probe_dir = os.environ["TEST_TMPDIR"]
        env = {**os.environ, **r.EnvVars(), "PROBE_DIR": probe_dir}
        done = subprocess.run([binary, "--in=sandbox"], env=env, timeout=120, check=False)
        self.assertEqual(done.returncode, 0)
        reports = []
        for rank in range(2):
            with open(os.path.join(probe_dir, f"rank{rank}.json"), encoding="utf-8") as f:
                reports.append(json.load(f))
        self.assertEqual([(r["world_size"], r["sum"]) for r in reports], [(2, 2), (2, 2)])
        self.assertEqual([r["argv"] for r in reports], [["--in=sandbox"]] * 2)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
