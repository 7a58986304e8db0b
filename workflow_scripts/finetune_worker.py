"""One process of a distributed fine-tune: torchrun's entry point (finetune_study/finetune_job.py
launch). Joins the process group, runs the job it is given (a JSON file) and leaves the group.
Rank 0 prints the job's log lines and progress; the others print only warnings and errors.
"""

import contextlib
import json
import os
import sys
from pathlib import Path

from finetune_study import common, distributed, finetune_job

job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
world = distributed.init(job["distributed"]["strategy"])
quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if not world.is_main else contextlib.nullcontext()
try:
    with quiet, common.log_to(None):
        finetune_job.run(job, world)
finally:
    distributed.close(world)
