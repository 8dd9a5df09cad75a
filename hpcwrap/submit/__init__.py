"""The login side: what ``hpcwrap sbatch`` does before and as it submits.

``request`` (the run request), ``newrun`` (the new run log), ``codestate`` (git),
``preflight`` (earlier experiments), ``submission`` (the batch script, sbatch, the job id),
``resume`` (the walltime-resume chain's policy), ``followup`` (the follow-up job for
clusters without hpcwrap's hooks), ``flow`` (the steps of ``hpcwrap sbatch``, in order).
"""
