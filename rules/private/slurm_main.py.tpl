"""Submits {binary_label} to SLURM: the main of its `.slurm` target, written by py_distributed_binary."""

from py_distributed.submit.slurm import main

main(target={target}, settings={settings}, shim=__file__)
