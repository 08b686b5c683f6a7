"""The main of //tests/k8s:gpu_job, whose Kubernetes manifests, not its runs, the tests check."""

print("gpu_job")
