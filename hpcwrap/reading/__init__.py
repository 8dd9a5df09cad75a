"""Reading what a training printed and wrote: the output reader (formats/, progress, scan),
the frameworks' own records (records/) and the telemetry summary.

Shared by the in-job wrapper, the epilog, ``hpcwrap scan`` and ``hpcwrap plot``: it sits
below them all, and imports nothing above runlog/ and the ground floor.
"""
