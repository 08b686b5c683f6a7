"""WORKSPACE-mode dependencies of rules_py_distributed.

Under bzlmod, MODULE.bazel's pip hub `py_distributed_pypi` provides torch and bazel-runfiles. In
WORKSPACE mode the same labels name the Python interpreter's own site-packages, so that BUILD files
are identical in both worlds.
"""

load("//rules/private:interpreter_packages.bzl", "interpreter_packages")

# The packages the runtime and its users' mains need, by their pip hub names.
_PACKAGES = ["bazel_runfiles", "psutil", "torch"]

def py_distributed_dependencies(name = "py_distributed_pypi", packages = []):
    """Declares `@py_distributed_pypi`, whose packages come from the interpreter's site-packages.

    Call it from WORKSPACE after loading this file. Install the packages into the interpreter that
    Bazel's Python toolchain runs (`python3` on PATH): `pip install torch bazel-runfiles psutil`.

    Args:
      name: the repository's name; keep the default, which the runtime's BUILD file refers to.
      packages: further packages to name, e.g. `["scikit_learn"]` for `@py_distributed_pypi//scikit_learn`.
    """
    interpreter_packages(name = name, packages = _PACKAGES + packages)
