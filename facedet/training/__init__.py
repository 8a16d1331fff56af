"""Training: prior matching, MultiBox loss, schedule, checkpoints and the loop.

The command is ``facedet train`` (:mod:`facedet.training.cli`); the library
entry point is :func:`facedet.training.trainer.train`.
"""
