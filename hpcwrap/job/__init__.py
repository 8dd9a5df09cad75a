"""Inside the job: supervise the command, pass its output through, read progress.

Modules: ``supervise`` (child process group, signals, exit status),
``passthrough`` (byte-exact fd-to-fd copy), ``scan`` (bounded line splitting and
prefilter), ``formats`` (what a line says), ``progress`` (the state), ``status``
(when to write Status entries and events; the ``TickHook`` for telemetry),
``results`` (final state, Results, loss_one_liner, Next), ``jobenv`` (Slurm
facts), ``sink`` (run-log writes that never raise), ``wrapper`` (the glue:
``run_command``).
"""
