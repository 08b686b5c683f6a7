"""Imported at the top of tests/e2e/warm_training.py. With PROBE_IMPORT_TOUCHES_CUDA=1 it marks
CUDA initialised when imported, as a module that calls torch.cuda.init() at import time does on a
CUDA build. A CPU build cannot initialise CUDA: the mark is the flag that torch's lazy
initialisation sets, torch.cuda._initialized, which torch.cuda.is_initialized() reads and a fork
inherits."""

import os

import torch

if os.environ.get("PROBE_IMPORT_TOUCHES_CUDA") == "1":
    torch.cuda._initialized = True
