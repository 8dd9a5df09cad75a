"""W&B offline runs: find them, read them, and sync them with ``hpcwrap wandb sync``.

- ``offline``: finding offline run folders and reading what they hold from their own
  transaction log (run id, entity/project, artifact staging files, history figures).
- ``plan``: what one sync would do (destination rules, sizes, staging to remove), its
  refusals, the key file, and the plan as text.
- ``sync``: the bounded, locked ``wandb beta sync`` call, recording the URL in the run
  log, and the staging clean-up after a successful sync only.

Nothing here imports wandb at module level; its protobuf classes load only to read a
run's transaction log.
"""
