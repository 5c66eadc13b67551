"""The cost of data parallelism: the distributed training path against the plain one.

Runs the same TopK training (d_in 576, d_sae 4608, k 32, global batch 4096, the fast
kernels) in fresh processes, alternating, and prints from this one run:

* **world size 1**: ``fit(..., replicas=...)`` inside a one-rank torch.distributed job
  (gloo) against plain ``fit``: the overhead of the all-reduces, the agreement checks and
  the global metrics when there is no one to share with (target: under 5%);
  A group of one exchanges nothing (its collectives return at once), so what remains is
  the rest of the path: the agreement checks, the shares, the global metrics;
* **all-reduce volume per step**: bytes each rank sends into all-reduces per step
  (gradients in one flat bucket, plus the firing counts), from ``Replicas.bytes_reduced``;
* **N ranks**: the same global batch over N ranks. On CPU, two ranks of half the threads
  each against one process with all of them (on a 2-core machine this cannot be faster; it
  shows what the communication costs when the ranks share the cores). On a machine with N
  GPUs (NCCL, one GPU per rank), the speed-up from 1 GPU to N.

    python bench/distributed.py                 # 7 rounds of 30 steps each (~6 min on 2 cores)
    python bench/distributed.py --steps 10 --rounds 1   # smoke run

Batches are 8 synthetic batches generated once and cycled, so data costs nothing on either
side. Times cover ``fit`` only (not imports or process start). The variants run in turn,
round after round, and each round's times are divided by that round's plain run: the
median of those paired ratios is robust to this host's drift (its speed wanders by 10%
over minutes), which a ratio of medians is not.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from itertools import cycle, islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sparse_batches(n: int, batch_size: int, d_in: int) -> list[torch.Tensor]:
    """``n`` batches of sparse codes over 2048 random unit directions (each active with p 0.01,
    magnitude in [0, 90)): data shaped like a layer's activations, made here so the bench
    needs nothing from the tests."""
    gen = torch.Generator().manual_seed(1)
    atoms = torch.randn(2048, d_in, generator=gen)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    out = []
    for i in range(n):
        gen = torch.Generator().manual_seed(1_000_003 + i)
        active = torch.rand(batch_size, len(atoms), generator=gen) < 0.01
        out.append((active * 3 * torch.rand(batch_size, len(atoms), generator=gen)) @ atoms * 30)
    return out


def child(args: argparse.Namespace) -> None:
    """One timed training run in this process; prints a JSON line."""
    from saelab.distributed import join, leave, split_world
    from saelab.train import RunConfig, TopKConfig, fit
    from saelab.train.replicated import share_of

    # device None: the rank's GPU under NCCL, else CUDA when present, else the CPU.
    cfg = TopKConfig(d_in=576, d_sae=4608, k=32, batch_size=4096, total_steps=args.steps, lr_warmup_steps=5,
                     lr_decay_steps=5, seed=0)
    batches = sparse_batches(8, cfg.batch_size, cfg.d_in)

    def source(start: int):
        return islice(cycle(batches), start % len(batches), None)

    world = join(timeout_s=120) if args.child == "dist" else None
    replicas = split_world(world, 1)[1] if world is not None else None
    run = RunConfig(progress=False, log_every=10)
    start = time.perf_counter()
    fit(cfg, share_of(source, replicas) if replicas is not None else source, run, replicas)
    seconds = time.perf_counter() - start
    sent = replicas.bytes_reduced if replicas is not None else 0
    if world is None or world.is_main:
        print(json.dumps({"seconds": seconds, "bytes_per_step": sent / args.steps, "threads": torch.get_num_threads()}))
    leave()


def launch(mode: str, ranks: int, threads: int, steps: int) -> dict[str, float]:
    """Run ``child`` in ``ranks`` fresh processes (a gloo job when mode is "dist")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(ranks):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        if mode == "dist":
            env.update(RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        command = [sys.executable, __file__, "--child", mode, "--steps", str(steps)]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{mode} x{ranks} failed: {[p.returncode for p in procs]}")
    return json.loads(next(line for out in outputs for line in out.splitlines() if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7, help="alternating repetitions of every variant")
    parser.add_argument("--child", choices=("plain", "dist"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cores = os.cpu_count() or 1
    variants = {
        "plain, 1 process": ("plain", 1, cores),
        "distributed, world size 1": ("dist", 1, cores),
    }
    gpus = torch.cuda.device_count()
    if gpus > 1:
        variants[f"distributed, world size {gpus} (1 GPU each)"] = ("dist", gpus, max(1, cores // gpus))
    elif gpus == 0:
        variants[f"distributed, world size 2 ({max(1, cores // 2)} thread(s) each)"] = ("dist", 2, max(1, cores // 2))
    times: dict[str, list[float]] = {name: [] for name in variants}
    volume: dict[str, float] = {}
    names = list(variants)
    for round_ in range(args.rounds):
        # Each round starts with another variant, so that no variant always runs first.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            mode, ranks, threads = variants[name]
            result = launch(mode, ranks, threads, args.steps)
            times[name].append(result["seconds"])
            volume[name] = result["bytes_per_step"]
            print(f"round {round_ + 1}: {name}: {result['seconds']:.2f} s", flush=True)
    report(times, volume, args.steps)


def report(times: dict[str, list[float]], volume: dict[str, float], steps: int) -> None:
    tokens = steps * 4096
    plain = times["plain, 1 process"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    print(f"\nTopK d_sae 4608, global batch 4096, {steps} steps, on {device}; {len(plain)} round(s)")
    print(f"{'variant':<48} {'median s':>8} {'tokens/s':>9} {'vs plain (paired)':>18} {'all-reduce/step':>16}")
    ratios = {}
    for name, values in times.items():
        paired = [v / p for v, p in zip(values, plain, strict=True)]
        ratios[name], low, high = statistics.median(paired), min(paired), max(paired)
        median = statistics.median(values)
        print(f"{name:<48} {median:>8.2f} {tokens / median:>9.0f} {ratios[name]:>7.3f}x [{low:.2f}-{high:.2f}] "
              f"{volume[name] / 2**20:>10.2f} MiB")
    overhead = ratios["distributed, world size 1"] - 1
    print(f"\noverhead of the distributed path at world size 1: {overhead * 100:+.1f}% (median of paired ratios; "
          "target < 5%)")


if __name__ == "__main__":
    main()
