"""Public API of rules_py_distributed.

`py_distributed_binary` is a `py_binary` that starts its own torchrun: run it and it becomes the
launcher, and every worker torchrun starts re-enters the same Bazel binary through its stub, so workers
have exactly the launcher's imports, data and interpreter. The user's main is an unmodified
torchrun-style script.

`py_distributed_test` is the same as a `py_test`: `bazel test` runs its main on N ranks (2 by
default), in the sandbox or on a remote executor, and it passes only if every rank passes.

This file uses Bazel's built-in `py_binary` and `py_test` (Bazel 4 to 8; Bazel 8 autoloads them
from rules_python). Under bzlmod, and on Bazel 9, which has no built-in py rules, load the same
macros from `//rules:rules_python.bzl`, which binds rules_python's rules.
"""

load("//rules/private:py_distributed_binary.bzl", _py_distributed_binary = "py_distributed_binary")
load("//rules/private:py_distributed_test.bzl", _py_distributed_test = "py_distributed_test")

py_distributed_binary = _py_distributed_binary

py_distributed_test = _py_distributed_test
