"""Train an SAE from the command line.

    python -m saelab.train --activation topk --layer 20 --tokens 2000000 --target-l0 32
    python -m saelab.train --activation batchtopk --k 32
    python -m saelab.train --activation relu --target-l0 32 --resume --use-wandb

Builds (or reuses) the activation store, optionally calibrates sparsity to --target-l0,
trains with periodic atomic checkpoints (resume with --resume), saves the SAE in SAELens
format, evaluates it on held-out tokens and prints a results table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from pathlib import Path

from saelab._util.paths import cache_dir
from saelab.train.config import TrainConfig
from saelab.train.registry import architecture_names, get_architecture


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m saelab.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activation", choices=architecture_names(), default="topk", help="SAE architecture")
    parser.add_argument("--hidden-dim", type=int, default=None, help="d_sae (default 8 x d_model)")
    parser.add_argument("--lr", type=float, default=None, help="Adam lr (default: 2e-3 for runs under 2,000 steps, "
                        "where Adam needs to move biases and thresholds far in few steps; 4e-4 for longer ones)")
    parser.add_argument("--batch-size", type=int, default=4096, help="activation vectors per step")
    parser.add_argument("--layer", type=int, default=None,
                        help="blocks.LAYER.hook_resid_pre (default: the profile's default hook)")
    parser.add_argument("--hook", default=None, help="any TransformerLens hook name (overrides --layer)")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="training tokens (steps = tokens / batch size)")
    parser.add_argument("--store-tokens", type=int, default=None,
                        help="rows in the activation store (default: --tokens + 5%% held out)")
    parser.add_argument("--target-l0", type=float, default=None,
                        help="calibrate sparsity to this L0 (TopK, BatchTopK: sets k)")
    parser.add_argument("--k", type=int, default=32, help="TopK/BatchTopK k when --target-l0 is not given")
    parser.add_argument("--calibration-steps", type=int, default=None,
                        help="steps per calibration trial (default: the run's own length, at most 500)")
    parser.add_argument("--jumprelu-threshold", type=float, default=1.0, help="JumpReLU's initial threshold on "
                        "normalised inputs (short runs need it near its final value)")
    parser.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--profile", default="offline", help="offline (default) or gpt2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where to save the SAE (default under the cache)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this config")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--use-wandb", action="store_true", help="log to W&B (WANDB_MODE=offline works)")
    parser.add_argument("--eval-sequences", type=int, default=64,
                        help="held-out sequences for the final evaluation (0: skip)")
    parser.add_argument("--device", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Heavy imports after argument parsing, so --help is instant.
    from saelab import profiles
    from saelab.train.export import save_sae
    from saelab.train.pipeline import activation_store, evaluate_saved, summary_table, train_on_store
    from saelab.train.trainer import RunConfig, checkpoint_folder

    profile = profiles.get(args.profile)
    hook = args.hook or (f"blocks.{args.layer}.hook_resid_pre" if args.layer is not None else profile.default_hook)
    model = profile.load_model(args.device)
    steps = max(1, args.tokens // args.batch_size)
    store_tokens = args.store_tokens or int(args.tokens * 1.06) + 1
    store = activation_store(model, [hook], n_tokens=store_tokens, seed=args.seed)
    cfg = build_config(
        args, d_in=model.cfg.d_model, steps=steps, model_name=model.cfg.model_name, hook=hook,
        dataset=f"saelab offline mix, {store_tokens} tokens (store {store.key})",
    )
    run = RunConfig(
        checkpoint_dir=str(checkpoint_folder(cache_dir() / "checkpoints", cfg)),
        checkpoint_every=args.checkpoint_every, resume=args.resume, use_wandb=args.use_wandb,
    )
    calibration_steps = args.calibration_steps or min(steps, 500)
    result = train_on_store(store, cfg, run, target_l0=args.target_l0, calibration_steps=calibration_steps)
    out = args.out or cache_dir() / "saes" / f"{args.activation}-{hook}"
    save_sae(result.sae, out)
    print(f"\nSaved SAE (SAELens format) to {out}")
    evaluation = None
    if args.eval_sequences:
        evaluation = evaluate_saved(model, out, store, max_sequences=args.eval_sequences)
    table = summary_table({f"{args.activation} @ {hook}": (result.train, evaluation)})
    print("\n" + table.T.to_string(float_format=lambda v: f"{v:.4f}" if not math.isnan(v) else "-"))
    return 0


def build_config(
    args: argparse.Namespace, *, d_in: int, steps: int, model_name: str, hook: str, dataset: str
) -> TrainConfig:
    """The TrainConfig of ``--activation`` from the arguments. Options that only some
    architectures have (``--k``, ``--jumprelu-threshold``) go to those that have the field."""
    config_class = get_architecture(args.activation).config
    lr = args.lr if args.lr is not None else (2e-3 if steps < 2000 else 4e-4)
    own = {"k": args.k, "jumprelu_init_threshold": args.jumprelu_threshold, "jumprelu_bandwidth": 0.5}
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(
        d_in=d_in, d_sae=args.hidden_dim or 8 * d_in, lr=lr, batch_size=args.batch_size, total_steps=steps,
        lr_warmup_steps=min(100, steps // 10), lr_decay_steps=max(1, steps // 5), seed=args.seed,
        compute_dtype=args.compute_dtype, model_name=model_name, hook_name=hook, device=args.device,
        dataset=dataset, **{name: value for name, value in own.items() if name in names},
    )


if __name__ == "__main__":
    sys.exit(main())
