# hpcwrap's node hook, shared by slurm/prolog.sh and slurm/epilog.sh (which set $hook
# and source this file; it is not run on its own). Runs as root for EVERY job.
#
# For a job that is not hpcwrap's it decides so with shell built-ins alone (no
# Python, no fork) and exits 0 at once. For an hpcwrap job (comment
# "hpcwrap:<run log>", or the wrapper registered it in the spool folder) it runs
# hpcwrap's hook (hpcwrap/hooks/node.py), which drops to the job's user and records the
# start (prolog) or closes the run log when the wrapper could not (epilog). It
# ALWAYS exits 0: a failing epilog drains the node, a failing prolog drains it and
# requeues the job. Slurm gives hooks no PATH: every program is named by its
# absolute path.
#
# Settings (environment, set by the wrapper script slurm.conf names, see
# slurm/slurm.conf.example):
#   HPCWRAP_PYTHON        python of a root-owned environment with hpcwrap installed
#   HPCWRAP_SPOOL         spool folder (default /var/spool/hpcwrap; root-owned, mode 1777)
#   HPCWRAP_HOOK_LOG      a root-owned file for the hook's own problems (also syslog)
#   HPCWRAP_HOOK_TIMEOUT  the hook's own time limit in seconds (default 20)
# shellcheck shell=sh
case "${SLURM_JOB_COMMENT-}" in
    hpcwrap:*) ;;
    *) [ -f "${HPCWRAP_SPOOL:-/var/spool/hpcwrap}/${SLURM_CLUSTER_NAME:-cluster}_${SLURM_JOB_ID:-none}" ] || exit 0 ;;
esac
[ -n "${HPCWRAP_PYTHON-}" ] && [ -x "$HPCWRAP_PYTHON" ] || exit 0
# -I: ignore PYTHONPATH, the user site and the current folder (all user-controlled).
if [ -x /usr/bin/timeout ]; then
    /usr/bin/timeout -k 5 60 "$HPCWRAP_PYTHON" -I -m hpcwrap.hooks "${hook:-none}" </dev/null >/dev/null 2>&1
else
    "$HPCWRAP_PYTHON" -I -m hpcwrap.hooks "${hook:-none}" </dev/null >/dev/null 2>&1
fi
exit 0
