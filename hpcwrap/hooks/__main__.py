"""``python -I -m hpcwrap.hooks prolog|epilog``: the entry slurm/hook.sh runs (keep it)."""

import sys

from hpcwrap.hooks.node import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
