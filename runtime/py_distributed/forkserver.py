"""What multiprocessing's forkserver imports first (`py_distributed.warm_start`): the server dies
with the launcher.

Its children, the workers, die with the server (`worker.die_with_launcher`), but the server itself
would outlive a SIGKILLed launcher: it exits once every holder of its "alive" pipe has, and the
workers hold that pipe too, so neither would ever end.
"""

from py_distributed import worker

worker.die_with_launcher()
