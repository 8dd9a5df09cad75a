#!/bin/sh
# Slurm Epilog shim for hpcwrap (runs as root on every node of a job).
# Placeholder until the hooks land. It must always exit 0: a failing epilog
# drains the node.
exit 0
