#!/bin/bash
#SBATCH --job-name=toy-train
#SBATCH --time=00:10:00
#SBATCH --output=slurm-%j.out
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --signal=B:USR2@60
#
# Runs examples/toy_train.py, a toy trainer without torch, as an ordinary batch job:
#   sbatch examples/train.sh [toy_train.py flags...]     (from the repo root or examples/)
#   bash examples/train.sh [toy_train.py flags...]       (no Slurm needed)
# Extra arguments reach the trainer, e.g. `--steps 600 --format nanogpt --resume auto`.
# Environment: PYTHON (default python3), TOY_TRAIN (path to toy_train.py),
# TOY_CONFIG (config file; default config.yaml if PyYAML is importable, else config.json).
#
# --signal=B:USR2@60 asks Slurm to send SIGUSR2 to this batch shell 60 s before the
# time limit. The shell `exec`s the trainer, so the trainer IS the batch shell and gets
# it: it saves a checkpoint and exits 124; `--resume auto` continues from it.
set -euo pipefail

# Slurm runs a copy of this script from its spool folder, so the script's own folder is
# not the repo under sbatch: look beside the script first (plain bash), then in the
# folder sbatch was run from.
find_trainer() {
    local here candidate
    if [ -n "${TOY_TRAIN:-}" ]; then
        if [ -f "$TOY_TRAIN" ]; then
            echo "$TOY_TRAIN"
            return 0
        fi
        echo "train.sh: TOY_TRAIN=$TOY_TRAIN is not a file" >&2
        return 1
    fi
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    for candidate in \
        "$here/toy_train.py" \
        "${SLURM_SUBMIT_DIR:-$PWD}/examples/toy_train.py" \
        "${SLURM_SUBMIT_DIR:-$PWD}/toy_train.py"; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "train.sh: cannot find toy_train.py (looked beside this script and in" \
        "${SLURM_SUBMIT_DIR:-$PWD}[/examples]); set TOY_TRAIN=/path/to/toy_train.py" >&2
    return 1
}

TRAINER="$(find_trainer)"
EXAMPLES="$(dirname "$TRAINER")"
PYTHON="${PYTHON:-python3}"

if [ -n "${TOY_CONFIG:-}" ]; then
    CONFIG="$TOY_CONFIG"
elif "$PYTHON" -c "import yaml" 2>/dev/null; then
    CONFIG="$EXAMPLES/config.yaml"
else
    CONFIG="$EXAMPLES/config.json"
fi

echo "train.sh: job ${SLURM_JOB_ID:-none} on $(hostname), $("$PYTHON" --version 2>&1)," \
    "trainer $TRAINER, config $CONFIG"
# exec: the trainer replaces this shell, so Slurm's signals reach it directly.
exec "$PYTHON" -u "$TRAINER" --config "$CONFIG" "$@"
