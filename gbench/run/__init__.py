"""Running trials: the training loop, trial set-up and result, executors, checkpoints, the suite runner."""
