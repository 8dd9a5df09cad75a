#!/bin/sh
# Slurm Prolog shim for hpcwrap: runs as root on every node of EVERY job; exits 0
# always. The logic (shell built-ins only for other jobs) is in hook.sh beside it.
# shellcheck disable=SC2034 # read by hook.sh
hook=prolog
# ${0%/*}: this script's folder, without a fork; Slurm runs hooks by absolute path.
[ -f "${0%/*}/hook.sh" ] || exit 0
# shellcheck source=slurm/hook.sh
. "${0%/*}/hook.sh"
