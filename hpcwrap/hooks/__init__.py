"""Slurm's node Prolog/Epilog, run as root: ``python -I -m hpcwrap.hooks prolog|epilog``
(what slurm/hook.sh runs). The work is in ``hooks.node``."""
