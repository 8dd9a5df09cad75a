"""hpcwrap: run logs that keep themselves for ML training on Slurm clusters."""

__version__ = "0.1.0"
