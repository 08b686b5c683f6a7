"""Public API of rules_py_distributed.

`py_distributed_binary` is a `py_binary` that starts its own torchrun: run it and it becomes the
launcher, and every worker torchrun starts re-enters the same Bazel binary through its stub, so workers
have exactly the launcher's imports, data and interpreter. The user's main is an unmodified
torchrun-style script.

This file uses Bazel's built-in `py_binary` (Bazel 4 to 8; Bazel 8 autoloads it from rules_python).
Under bzlmod, and on Bazel 9, which has no built-in py rules, load the same macro from
`//rules:rules_python.bzl`, which binds rules_python's `py_binary`.
"""

load("//rules/private:py_distributed_binary.bzl", _py_distributed_binary = "py_distributed_binary")

py_distributed_binary = _py_distributed_binary
