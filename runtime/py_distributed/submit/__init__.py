"""Submitting a py_distributed_binary to a cluster's scheduler: `slurm` (the `.slurm` target, a
package: request, checks, client, follower) and `kubernetes` (the `.k8s` target's manifests)."""
