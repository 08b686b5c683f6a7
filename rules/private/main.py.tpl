"""Main of {label}, written by py_distributed_binary: it runs as torchrun's launcher or as a worker."""

from py_distributed.binary import main

# Guarded: multiprocessing's forkserver workers import the main module before they run
# (py_distributed.launch.warm_start), and must not launch the job again.
if __name__ == "__main__":
    main(settings={settings}, shim=__file__)
