"""`py_distributed_binary` and `py_distributed_test` bound to rules_python's rules, for bzlmod users.

Bazel 8 moved the Python rules into rules_python and Bazel 9 removed the built-in ones, so a module
loads the macros from here. The arguments are those of `//rules:defs.bzl`.
"""

load("@rules_python//python:py_binary.bzl", "py_binary")
load("@rules_python//python:py_test.bzl", "py_test")
load("//rules/private:py_distributed_binary.bzl", _py_distributed_binary = "py_distributed_binary")
load("//rules/private:py_distributed_test.bzl", _py_distributed_test = "py_distributed_test")

def py_distributed_binary(name, **kwargs):
    """`py_distributed_binary` of `//rules:defs.bzl` with rules_python's `py_binary`.

    Args:
      name: the target's name.
      **kwargs: every argument of `//rules:defs.bzl`'s `py_distributed_binary` but `py_binary_rule`.
    """
    _py_distributed_binary(name = name, py_binary_rule = py_binary, **kwargs)

def py_distributed_test(name, **kwargs):
    """`py_distributed_test` of `//rules:defs.bzl` with rules_python's `py_test`.

    Args:
      name: the target's name.
      **kwargs: every argument of `//rules:defs.bzl`'s `py_distributed_test` but `py_test_rule`.
    """
    _py_distributed_test(name = name, py_test_rule = py_test, **kwargs)
