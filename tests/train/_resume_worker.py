"""Subprocess body for the SIGKILL resume test: train with checkpoints, save the result.

usage: python tests/train/_resume_worker.py CHECKPOINT_DIR OUTPUT_FILE SECONDS_PER_BATCH
"""

import sys
import time

import torch
from _resume_config import CFG  # same folder, on sys.path when run as a script

from saelab.train.trainer import RunConfig, fit
from tests._synthetic import synthetic_source

ckpt_dir, out_file, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
base = synthetic_source(CFG.d_in, CFG.batch_size, seed=7)


def slow_source(start):
    for batch in base(start):
        time.sleep(delay)  # slow enough that the parent can kill us part-way
        yield batch


result = fit(CFG, slow_source, RunConfig(checkpoint_dir=ckpt_dir, checkpoint_every=5, progress=False, log_every=5))
torch.save({"state": result.sae.state_dict(), "resumed_from": result.resumed_from}, out_file)
