#!/bin/sh
# Slurm Prolog shim for hpcwrap (runs as root on every node of a job).
# Placeholder until the hooks land. It must always exit 0: a failing prolog
# drains the node and requeues the job.
exit 0
