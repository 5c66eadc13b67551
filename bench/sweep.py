"""A sweep against its members trained one after another, side by side in one run.

    python bench/sweep.py                      # 4 TopK SAEs (k 16/32/64/128, d_sae 4608, batch 4096), 60 steps
    python bench/sweep.py --steps 20           # quicker

Measured, each in a fresh process so that its peak memory is its own:

* **sequential**: the current trainer (``fit``) on each config in turn;
* **sweep**: ``fit_sweep`` on the four configs, every batch read once;
* **SAELens**: its ``SAETrainer`` on one of the configs (k=32), the same batches (the
  settings of bench/train.py, which explains how the two trainers are matched);
* **splitting**: a narrow BatchTopK (d_sae / 4), a wide one and a wide Matryoshka whose first level
  is the narrow width, in one sweep; how each narrow feature is found in the wide SAE and in the
  Matryoshka's first level (the paper's claim: parents stay whole there, plain SAEs split them);
* **exact L0**: a BatchTopK (k=32), a JumpReLU and a TopK (k=64) trained in one sweep, then
  ``adjust_thresholds`` to targets near and far from their L0, the TopK converted to JumpReLU:
  held-out L0 against the target (goal within 2%), and the explained-variance cost.

Printed: wall time of the training loops and the ratio sweep / sequential (target <= 0.9),
held-out explained variance and L0 of every member on both paths (target: equal within
0.005), and peak memory: the rise of the process's peak resident set over what it held before
training, against the members' parameters, gradients and Adam moments plus one batch (what a
sweep should hold; N batches would be N x 9.4 MB here).

Data: notebook 04's activation store (``blocks.20.hook_resid_pre`` of smollm2-135m, 100k rows,
built by the first run if it is not cached: ~4 min at ~500 tokens/s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from saelab.evals import explained_variance
from saelab.store import ActivationStore
from saelab.train import RunConfig, TrainConfig, config_for, fit, fit_sweep
from saelab.train.pipeline import store_source

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 0.9
PATHS = ("sequential", "sweep", "saelens", "exact", "splitting")
EV_TOLERANCE = 0.005


def configs(args: argparse.Namespace, d_in: int) -> list[TrainConfig]:
    return [
        config_for(
            "topk",
            k=k,
            d_in=d_in,
            d_sae=args.d_sae,
            batch_size=args.batch_size,
            total_steps=args.steps,
            lr_warmup_steps=args.steps // 10,
            lr_decay_steps=args.steps // 5,
            device="cpu",
            hook_name=args.hook,
            normalize_activations="none",
            seed=args.seed,
        )  # fmt: skip
        for k in args.ks
    ]


def memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@torch.no_grad()
def held_out_scores(sae, held: torch.Tensor) -> tuple[float, float]:
    feats = torch.cat([sae.encode(held[i : i + 4096]) for i in range(0, len(held), 4096)])
    x_hat = torch.cat([sae.decode(feats[i : i + 4096]) for i in range(0, len(feats), 4096)])
    return explained_variance(held, x_hat), float((feats != 0).sum(1).float().mean())


def child(args: argparse.Namespace) -> None:
    """One measured path, in its own process; prints one JSON line."""
    store = ActivationStore.open(args.store)
    held = store.load(args.hook, "held_out")
    cfgs = configs(args, store.d_in(args.hook))
    source = store_source(store, args.hook, args.batch_size, args.seed)
    run = RunConfig(progress=False)
    before = memory_kb("VmRSS")
    start = time.perf_counter()
    if args.child == "splitting":
        splitting(args, store, cfgs)
        return
    if args.child == "exact":
        # Its own, larger held-out split (a reopened store's fraction): 5% of 100k tokens is some 38
        # sequences from a few documents, whose mean L0 alone wanders by 5-19% (the 'blocks' column).
        exact_l0(args, ActivationStore.open(args.store, held_out_fraction=args.exact_held_out), cfgs)
        return
    if args.child == "sequential":
        saes = [fit(cfg, source, run).sae for cfg in cfgs]
    elif args.child == "sweep":
        saes = fit_sweep(cfgs, source, run).results
        saes = [r.sae for r in saes]
    else:
        saes = [saelens_topk(cfgs[1], source, held)]
    seconds = time.perf_counter() - start
    peak = memory_kb("VmHWM")
    scores = [held_out_scores(sae, held) for sae in saes]
    state_mb = sum(4 * p.numel() * 4 for sae in saes for p in sae.parameters()) / 2**20  # param, grad, 2 Adam moments
    print(json.dumps({"path": args.child, "seconds": seconds, "peak_rise_mb": (peak - before) / 1024,
                      "state_mb": state_mb, "batch_mb": args.batch_size * held.shape[1] * 4 / 2**20,
                      "scores": scores}))  # fmt: skip


def exact_l0(args: argparse.Namespace, store: ActivationStore, cfgs: list[TrainConfig]) -> None:
    """BatchTopK, JumpReLU and a TopK (k=64) trained in one sweep, then moved to exact L0s."""
    from saelab.train.thresholds import adjust_thresholds

    common = {f: getattr(cfgs[0], f) for f in ("d_in", "d_sae", "batch_size", "total_steps", "hook_name", "seed")}
    members = [
        config_for("batchtopk", k=32, topk_threshold_lr=0.1, lr_warmup_steps=args.steps // 10,
                   lr_decay_steps=args.steps // 5, **common),  # a threshold rate that settles in a short run
        config_for("jumprelu", lr=2e-3, jumprelu_init_threshold=1.0, jumprelu_bandwidth=0.5,
                   lr_warmup_steps=args.steps // 10, lr_decay_steps=args.steps // 5, **common),
        config_for("topk", k=64, lr_warmup_steps=args.steps // 10, lr_decay_steps=args.steps // 5, **common),
    ]  # fmt: skip
    source = store_source(store, args.hook, args.batch_size, args.seed)
    saes = {r.cfg.activation: r.sae for r in fit_sweep(members, source, RunConfig(progress=False)).results}
    train = store.load(args.hook, "train", device="cpu")
    block = store.n_rows("held_out")  # training-split blocks as large as the held-out split: its noise floor
    rows = []
    for name, target in (("batchtopk", 32), ("batchtopk", 16), ("jumprelu", 32), ("jumprelu", 64), ("topk", 32)):
        start = time.perf_counter()
        r = adjust_thresholds(saes[name], store, target_l0=target, max_rows=args.calibration_rows)
        seconds = time.perf_counter() - start
        blocks = [mean_l0(r.sae, train[i : i + block]) for i in range(0, len(train) - block + 1, block)]
        spread = max(abs(b - target) / target for b in blocks)
        rows.append({"sae": name, "seconds": seconds, "block_spread": spread, **r.to_dict()})
    print(json.dumps({"path": "exact", "rows": rows, "n_held_out": store.n_rows("held_out")}))


def splitting(args: argparse.Namespace, store: ActivationStore, cfgs: list[TrainConfig]) -> None:
    """A narrow BatchTopK (d_sae / 4), a wide one and a wide Matryoshka whose first level is the
    narrow width, trained in one sweep; each narrow feature matched by decoder direction
    (``evolution.match_features``, its null) in the wide SAE and in the Matryoshka's first level."""
    from saelab.evolution import match_features

    narrow_width = args.d_sae // 4
    # Seeds differ: the same seed would start a wide SAE's first latents on the narrow one's directions.
    common = {f: getattr(cfgs[0], f) for f in ("d_in", "batch_size", "hook_name")}
    common.update(total_steps=args.split_steps, lr_warmup_steps=args.split_steps // 10,
                  lr_decay_steps=args.split_steps // 5, k=32, topk_threshold_lr=0.1)  # fmt: skip
    members = [
        config_for("batchtopk", d_sae=narrow_width, seed=args.seed + 1, **common),
        config_for("batchtopk", d_sae=args.d_sae, seed=args.seed + 2, **common),
        config_for(
            "matryoshka_batchtopk", d_sae=args.d_sae, prefix_sizes=(narrow_width,), seed=args.seed + 3, **common
        ),
    ]
    source = store_source(store, args.hook, args.batch_size, args.seed)
    narrow, wide, nested = [r.sae.W_dec.detach() for r in fit_sweep(members, source, RunConfig(progress=False)).results]
    rows = []
    for name, dirs in (("BatchTopK, all", wide), ("Matryoshka, first level", nested[:narrow_width]),
                       ("Matryoshka, all", nested)):  # fmt: skip
        found = match_features(narrow, dirs, method="decoder")
        unit = lambda w: w / w.norm(dim=1, keepdim=True)  # noqa: E731
        children = (unit(narrow) @ unit(dirs).T >= found.threshold).sum(1).float()
        matched = found.best["matched"].to_numpy(bool)
        rows.append({"in": name, "median_best": float(np.median(found.best["similarity"].to_numpy(float))),
                     "matched": float(matched.mean()), "threshold": found.threshold, "null_rate": found.null_rate,
                     "split": float((children[torch.from_numpy(matched)] >= 2).float().mean())})  # fmt: skip
    print(json.dumps({"path": "splitting", "rows": rows, "narrow": narrow_width, "steps": args.split_steps}))


@torch.no_grad()
def mean_l0(sae, x: torch.Tensor) -> float:
    return float(sum(int((sae.encode(x[i : i + 4096]) != 0).sum()) for i in range(0, len(x), 4096)) / len(x))


def saelens_topk(cfg: TrainConfig, source, held: torch.Tensor):
    """SAELens's trainer on the same batches (bench/train.py's matched settings)."""
    sys.path.insert(0, str(HERE))
    from train import saelens_trainer  # bench/train.py

    from saelab.train.base import geometric_median

    b_dec = geometric_median(next(source(0)))
    settings = argparse.Namespace(dead_window=max(1, cfg.dead_tokens_threshold // cfg.batch_size))
    trainer = saelens_trainer(cfg, source, b_dec, settings)
    return trainer.fit().eval()


def store_path(args: argparse.Namespace) -> str:
    import saelab
    from saelab.train import activation_store

    model = saelab.profiles.get("offline").load_model()
    return str(activation_store(model, [args.hook], n_tokens=args.tokens).path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--ks", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 64, 128])
    parser.add_argument("--hook", default="blocks.20.hook_resid_pre")
    parser.add_argument("--tokens", type=int, default=100_000, help="store rows (notebook 04's store by default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-rows", type=int, default=20_000, help="exact L0: calibration rows read")
    parser.add_argument("--exact-held-out", type=float, default=0.3, help="exact L0: share of sequences held out")
    parser.add_argument("--split-steps", type=int, default=200, help="splitting: steps of its three SAEs")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="what to measure")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.store = store_path(args)
    print(f"store: {args.store}\n{len(args.ks)} TopK SAEs, k={args.ks}, d_sae={args.d_sae}, batch {args.batch_size}, "
          f"{args.steps} steps, threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    results = {}
    for path in args.paths:
        argv = [sys.executable, __file__, "--child", path, "--store", args.store, *_forward(args)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[path] = json.loads(out)
        print(f"  {path}: done", flush=True)
    if {"sequential", "sweep", "saelens"} <= set(results):
        report_speed(args, results)
    if "exact" in results:
        report_exact(args, results["exact"])
    if "splitting" in results:
        report_splitting(results["splitting"])


def _forward(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--d-sae", str(args.d_sae),
            "--ks", ",".join(map(str, args.ks)), "--hook", args.hook, "--seed", str(args.seed),
            "--calibration-rows", str(args.calibration_rows), "--exact-held-out", str(args.exact_held_out),
            "--split-steps", str(args.split_steps)]  # fmt: skip


def report_speed(args: argparse.Namespace, r: dict) -> None:
    seq, sweep, lens = r["sequential"], r["sweep"], r["saelens"]
    ratio = sweep["seconds"] / seq["seconds"]
    print(f"\nwall time: sequential {seq['seconds']:.1f} s, sweep {sweep['seconds']:.1f} s, ratio {ratio:.3f} "
          f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'})")  # fmt: skip
    print(f"SAELens, one SAE (k={args.ks[1]}): {lens['seconds']:.1f} s; ours alone, same SAE: about "
          f"{seq['seconds'] / len(args.ks):.1f} s (sequential / {len(args.ks)})")  # fmt: skip
    print(f"\n{'k':>5} {'EV sequential':>14} {'EV sweep':>9} {'diff':>8} {'L0 sequential':>14} {'L0 sweep':>9}")
    worst = 0.0
    for k, (ev_a, l0_a), (ev_b, l0_b) in zip(args.ks, seq["scores"], sweep["scores"], strict=True):
        worst = max(worst, abs(ev_a - ev_b))
        print(f"{k:>5} {ev_a:>14.4f} {ev_b:>9.4f} {ev_b - ev_a:>+8.4f} {l0_a:>14.1f} {l0_b:>9.1f}")
    print(f"largest EV difference {worst:.4f} (target <= {EV_TOLERANCE})")
    state, batch = sweep["state_mb"], sweep["batch_mb"]
    print(f"\npeak memory rise: sequential {seq['peak_rise_mb']:.0f} MB (one member's state, "
          f"{seq['state_mb'] / len(args.ks):.0f} MB, at a time), sweep {sweep['peak_rise_mb']:.0f} MB")  # fmt: skip
    print(f"the members' state {state:.0f} MB + one batch {batch:.1f} MB = {state + batch:.0f} MB; "
          f"sweep / that = {sweep['peak_rise_mb'] / (state + batch):.2f}")  # fmt: skip


def report_splitting(r: dict) -> None:
    print(
        f"\nfeature splitting: each feature of a {r['narrow']:,}-wide BatchTopK matched by decoder direction "
        f"({r['steps']} steps each; 'split': matched features with 2 or more latents above the threshold)"
    )
    print(f"{'in':<24} {'median best cos':>15} {'matched':>8} {'split':>7} {'threshold':>9} {'null rate':>9}")
    for row in r["rows"]:
        print(
            f"{row['in']:<24} {row['median_best']:>15.3f} {row['matched']:>8.1%} {row['split']:>7.1%} "
            f"{row['threshold']:>9.3f} {row['null_rate']:>9.1%}"
        )


def report_exact(args: argparse.Namespace, exact: dict) -> None:
    print(f"\nexact L0 (calibration: {args.calibration_rows:,} training rows; held-out: the last "
          f"{args.exact_held_out:.0%} of the store's sequences, {exact['n_held_out']:,} tokens)")  # fmt: skip
    print(f"{'SAE':<10} {'target':>6} {'method':>11} {'calib L0':>8} {'held-out L0':>11} {'error':>7} "
          f"{'L0 before':>9} {'EV before':>9} {'EV after':>8} {'EV typical':>10} {'s':>5} {'blocks':>7}")  # fmt: skip
    for row in exact["rows"]:
        print(
            f"{row['sae']:<10} {row['target_l0']:>6.0f} {row['method']:>11} {row['calibration_l0']:>8.2f} "
            f"{row['held_out_l0']:>11.2f} {row['relative_error']:>+7.2%} {row['l0_before']:>9.1f} "
            f"{row['explained_variance_before']:>9.4f} {row['explained_variance_after']:>8.4f} "
            f"{row['explained_variance_typical_after']:>10.4f} {row['seconds']:>5.0f} {row['block_spread']:>7.2%}"
        )
    worst = max(abs(row["relative_error"]) for row in exact["rows"])
    print(f"largest held-out L0 error {worst:.2%} (target <= 2%). 'blocks': the largest error of the same "
          "thresholds on training-split blocks of the held-out split's size, the sampling noise a split that "
          "small carries")  # fmt: skip


if __name__ == "__main__":
    main()
