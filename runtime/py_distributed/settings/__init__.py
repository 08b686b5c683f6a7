"""What a launch is told: each torchrun setting from BUILD, PET_* variables or the cluster
description, checked by one grammar, and this node's address. It never imports torch, so a bad
value is answered before torch is loaded, and the build checks BUILD values with the same code.
"""
