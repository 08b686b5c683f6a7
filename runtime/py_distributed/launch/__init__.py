"""The launcher: the only package that touches torch elastic.

`pipeline.launch` is its one entry: configure (`settings`), claim the node's GPUs (`gpu_claim`),
choose how workers start (`entry`, `warm_start`), hand the job to torchrun in-process
(`torchrun`), and report how it ended (`root_cause`). Its modules import only downwards:

    pipeline -> torchrun -> failures, shutdown -> workers
                         -> warm_start -> signals -> workers
                         -> root_cause, console, loopback, environment
             -> warm_start -> entry
             -> gpu_claim -> gpus, nvml, environment
(`forkserver` is what multiprocessing's forkserver imports first.) The workers' own side of a
launch is `worker`; what a launch is told is `settings`.
"""
