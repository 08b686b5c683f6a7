"""Repositories that Debian's offline Bazel 4.2.3 needs and cannot download. WORKSPACE mode only."""

def bazel4_offline_repositories():
    """Declares the local stand-ins for rules_cc, rules_java and remote_coverage_tools."""
    native.local_repository(
        name = "rules_cc",
        path = "tools/bazel4_offline/rules_cc",
    )
    native.local_repository(
        name = "rules_java",
        # Debian package bazel-rules-java.
        path = "/usr/share/bazel/rules/java",
    )
    native.local_repository(
        name = "remote_coverage_tools",
        path = "tools/bazel4_offline/remote_coverage_tools",
    )
