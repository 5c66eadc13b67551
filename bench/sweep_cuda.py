"""A sweep against its members trained one after another, on a CUDA GPU, side by side in one run.

    python bench/sweep_cuda.py                 # 4 TopK SAEs (k 16/32/64/128, d_sae 4608, batch 4096), 200 steps
    python bench/sweep_cuda.py --rounds 3

``bench/sweep.py`` measures this on CPU, where a step is almost all arithmetic and reading a
batch is ~1% of it. On a GPU the arithmetic is fast and every batch still crosses from host
memory, once per member when they are trained one after another and once per step in a
sweep. The rows here are random (a fixed [200k, 576] matrix in host memory, read in shuffled
batches, as a store is), so that the script needs no model; the EV printed is on 20k of those
rows and only compares the two paths (target: equal within 0.005). Each round trains the four
SAEs one after another with ``fit`` and then as one ``fit_sweep``; the first ``fit`` is an
untimed warm-up.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import torch

from saelab.train import RunConfig, config_for, fit, fit_sweep

TARGET_RATIO = 0.9


def row_source(rows: torch.Tensor, batch_size: int):
    """Shuffled batches of ``rows`` (host memory), the same ones from every start."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))

    def source(start: int) -> Iterator[torch.Tensor]:
        step = start
        while True:
            i = (step * batch_size) % (len(rows) - batch_size)
            yield rows[order[i : i + batch_size]]
            step += 1

    return source


def explained_variance(sae, x: torch.Tensor) -> float:
    with torch.no_grad():
        residual = x - sae.decode(sae.encode(x))
        return 1 - float(residual.pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ks", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 64, 128])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/sweep_cuda.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                         "on CPU run bench/sweep.py")  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    rows = torch.randn(200_000, 576, generator=gen) @ (torch.randn(576, 576, generator=gen) / 24)
    source = row_source(rows, 4096)
    cfgs = [
        config_for(
            "topk",
            k=k,
            d_in=576,
            d_sae=4608,
            batch_size=4096,
            total_steps=args.steps,
            lr_warmup_steps=args.steps // 10,
            lr_decay_steps=args.steps // 5,
            device="cuda",
            hook_name="bench",
            normalize_activations="none",
        )  # fmt: skip
        for k in args.ks
    ]
    run = RunConfig(progress=False)
    held = rows[:20_000].cuda()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {len(cfgs)} TopK SAEs, k={args.ks}, "
          f"{args.steps} steps of 4096 rows")  # fmt: skip
    fit(cfgs[0], source, run)  # warm-up: kernels, allocator
    for round_ in range(args.rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        alone = [fit(cfg, source, run) for cfg in cfgs]
        torch.cuda.synchronize()
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        sweep = fit_sweep(cfgs, source, run)
        torch.cuda.synchronize()
        swept = time.perf_counter() - start
        gap = max(abs(explained_variance(a.sae, held) - explained_variance(b.sae, held))
                  for a, b in zip(alone, sweep.results, strict=True))  # fmt: skip
        ratio = swept / sequential
        print(f"round {round_}: sequential {sequential:.2f} s, sweep {swept:.2f} s, ratio {ratio:.3f} "
              f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); largest EV "
              f"difference {gap:.5f}; peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
