"""What is done, running and left: ``status`` (``hpcwrap status``, local files only),
``poll`` (reconciliation with squeue/sacct) and ``plot``."""
