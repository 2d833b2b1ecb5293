"""The job level plans, locks and reports without torch: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def test_the_job_level_imports_no_torch():
    code = ("import sys, hireslm.jobs, hireslm.jobs.page, hireslm.jobs.worklist, "
            "hireslm.cli.restore; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
