"""Repositories that Debian's offline Bazel 4.2.3 needs and cannot download. WORKSPACE mode only."""

# buildifier: disable=unnamed-macro
def bazel4_offline_repositories(path = "tools/bazel4_offline"):
    """Declares the local stand-ins for rules_cc, rules_java and remote_coverage_tools.

    Args:
      path: this folder, relative to the calling workspace or absolute (for another workspace).
    """
    native.local_repository(
        name = "rules_cc",
        path = path + "/rules_cc",
    )
    native.local_repository(
        name = "rules_java",
        # Debian package bazel-rules-java.
        path = "/usr/share/bazel/rules/java",
    )
    native.local_repository(
        name = "remote_coverage_tools",
        path = path + "/remote_coverage_tools",
    )
