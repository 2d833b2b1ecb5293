"""The job level: ``run(inputs, output, options)`` restores files and folder trees into an
output folder (plans, the folder's lock, one file at a time, reports, the page, several
processes). No torch at import: the signal level (``hireslm.pipeline``) loads once a file
is to be restored."""

from hireslm.jobs.run import RunError, RunSettings, RunSummary, dry_run, plan, run

__all__ = ["RunError", "RunSettings", "RunSummary", "dry_run", "plan", "run"]
