"""The launcher: the only package that touches torch elastic.

`pipeline.launch` is its one entry: configure (`settings`), choose how workers start (`entry`,
`warm_start`), hand the job to torchrun in-process (`torchrun`), and report how it ended
(`root_cause`). Its modules import only downwards, in this order:

    pipeline -> torchrun -> signals, shutdown, failures -> workers, root_cause
             -> warm_start -> entry -> runfiles_env; console, loopback, environment, forkserver
"""
