"""Training: optimizers, schedules, losses, state, step, loop, checkpoints.

Kept free of imports so that `import flaxnets.train` (and the CLI's `--help`) stays fast; import
the submodules (`flaxnets.train.optim`, `.schedules`, `.losses`, ...) directly.
"""
