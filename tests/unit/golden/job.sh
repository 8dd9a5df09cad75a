#!/bin/bash
# Batch script written by hpcwrap {VERSION}: it runs a snapshot of the user's
# script under `hpcwrap run`, which keeps the run log up to date.
# hpcwrap's defaults come first: the script's #SBATCH lines below, SBATCH_*
# variables and sbatch command-line options all take precedence over them.
#SBATCH --job-name=train.sh
#SBATCH --comment=hpcwrap:/home/u/proj/run_logs/front_cam/2026-03-11_train.md
#SBATCH --open-mode=append
#SBATCH --signal=B:USR2@300
# The script's own #SBATCH lines, verbatim:
#SBATCH --job-name=front_cam
#SBATCH -p gpu -t 2:00:00   # two hours
#SBATCH --output=logs/%x-%j.out
# The walltime warning, as resolved at submission; an early one must not kill this
# shell before hpcwrap run handles it.
trap '' USR2
export HPCWRAP_WALLTIME_SIGNAL=USR2
export HPCWRAP_WALLTIME_TARGETS=batch
export HPCWRAP_BATCH_IGNORED=USR2
export HPCWRAP_RUN_LOG=/home/u/proj/run_logs/front_cam/2026-03-11_train.md
exec /opt/venv/bin/python -m hpcwrap run --log "$HPCWRAP_RUN_LOG" -- /home/u/proj/run_logs/front_cam/.hpcwrap/2026-03-11_train/script/train.sh --lr 3e-4 'two words' '$HOME'
