"""`py_distributed_binary` bound to rules_python's `py_binary`, for bzlmod users.

Bazel 8 moved the Python rules into rules_python and Bazel 9 removed the built-in ones, so a module
loads the macro from here. The arguments are those of `//rules:defs.bzl`.
"""

load("@rules_python//python:py_binary.bzl", "py_binary")
load("//rules/private:py_distributed_binary.bzl", _py_distributed_binary = "py_distributed_binary")

def py_distributed_binary(name, **kwargs):
    """`py_distributed_binary` of `//rules:defs.bzl` with rules_python's `py_binary`.

    Args:
      name: the target's name.
      **kwargs: every argument of `//rules:defs.bzl`'s `py_distributed_binary` but `py_binary_rule`.
    """
    _py_distributed_binary(name = name, py_binary_rule = py_binary, **kwargs)
