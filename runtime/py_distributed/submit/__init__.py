"""Submitting a py_distributed_binary to a cluster's scheduler: one module per scheduler, and
`shared_fs`, whether the nodes see the files a job runs from."""
