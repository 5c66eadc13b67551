"""``python -m saelab.train --sweep ...``: train the members in one pass, save each in SAELens
format, evaluate them together on held-out tokens and print the table with its frontier."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from saelab._util.paths import cache_dir
from saelab.train.config import TrainConfig
from saelab.train.sweep import sweep_folder
from saelab.train.sweep_spec import parse_sweep, read_sweep_file, sweep_configs

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

    from saelab.distributed import World
    from saelab.store import ActivationStore


def run_sweep(
    args: argparse.Namespace, model: HookedTransformer, store: ActivationStore, base: TrainConfig, world: World | None
) -> int:
    from saelab.distributed import whole_world
    from saelab.evals.pareto import winners
    from saelab.train.export import save_sae
    from saelab.train.pipeline import train_sweep
    from saelab.train.sweep_eval import evaluate_sweep
    from saelab.train.trainer import RunConfig

    members = read_sweep_file(args.sweep_file) if args.sweep_file else parse_sweep(args.sweep)
    configs = sweep_configs(base, members)
    replicas = whole_world(world) if world is not None else None
    folder = sweep_folder(cache_dir() / "checkpoints", configs)
    run = RunConfig(checkpoint_dir=str(folder), checkpoint_every=args.checkpoint_every, resume=args.resume,
                    use_wandb=args.use_wandb)  # fmt: skip
    result = train_sweep(store, configs, run, replicas=replicas)
    if replicas is not None and not replicas.is_leader:
        return 0
    out = args.out or cache_dir() / "saes" / folder.name
    for name, member in result.members.items():
        save_sae(member.sae, out / name)
    print(f"\nSaved {len(result.members)} SAEs (SAELens format) under {out} after {result.seconds:.0f} s of training")
    if not args.eval_sequences:
        return 0
    frame = evaluate_sweep(model, result, store, max_sequences=args.eval_sequences)
    print("\n" + frame.set_index("member").to_string(float_format=lambda v: "-" if math.isnan(v) else f"{v:.4f}"))
    if len(set(frame["activation"])) > 1:
        print("\nBest architecture per L0 (explained variance, each frontier read inside its own range):")
        print(winners(frame).to_string(index=False, float_format=lambda v: "-" if math.isnan(v) else f"{v:.4f}"))
    return 0
