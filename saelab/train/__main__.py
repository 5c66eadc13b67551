"""Train an SAE from the command line, in one process or across many with torchrun.

    python -m saelab.train --activation topk --layer 20 --tokens 2000000 --target-l0 32
    python -m saelab.train --activation batchtopk --k 32
    python -m saelab.train --activation relu --target-l0 32 --resume --use-wandb
    python -m saelab.train --layers 15 20 25                    # three SAEs, one after another
    torchrun --nproc_per_node=4 -m saelab.train --layer 20      # data-parallel over 4 GPUs/processes
    torchrun --nproc_per_node=4 -m saelab.train --layers 15 20  # two SAEs at once, 2 ranks each
    python -m saelab.train --sweep "k=16,32,64,128"             # four SAEs, one pass over the store
    python -m saelab.train --sweep "k=16,32" "hidden-dim=2304,4608" # the 2 x 2 grid
    python -m saelab.train --sweep-file sweep.json              # members listed in a file (saelab.train.sweep_spec)

Builds (or reuses) the activation store, optionally calibrates sparsity to --target-l0,
trains with periodic atomic checkpoints (resume with --resume), saves the SAE in SAELens
format, evaluates it on held-out tokens and prints a results table.

Under torchrun every rank builds its share of the store, then the ranks are split into one
group per hook; each group trains its SAE data-parallel (--batch-size is the global batch,
split evenly over the group) and its first rank saves, evaluates and prints. A run resumes
with any number of ranks, since the global batch does not change. A sweep trains its members
at one hook, every batch read once for all of them; under torchrun every rank trains every
member on its share of each batch (:mod:`saelab.train.sweep` says why).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from saelab._util.paths import cache_dir
from saelab.train.config import TrainConfig
from saelab.train.registry import architecture_names, get_architecture

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

    from saelab.distributed import Replicas, World
    from saelab.evals.harness import EvalResult
    from saelab.store import ActivationStore
    from saelab.train.trainer import TrainResult


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
    parser.add_argument("--layers", type=int, nargs="+", default=None,
                        help="train one SAE per layer (blocks.L.hook_resid_pre) from one store; under torchrun "
                        "they train at once, one group of ranks each")
    parser.add_argument("--hooks", nargs="+", default=None, help="like --layers, with any hook names")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="training tokens (steps = tokens / batch size)")
    parser.add_argument("--store-tokens", type=int, default=None,
                        help="rows in the activation store (default: --tokens + 5%% held out)")
    parser.add_argument("--target-l0", type=float, default=None,
                        help="calibrate sparsity to this L0 (TopK, BatchTopK: sets k)")
    parser.add_argument("--k", type=int, default=32, help="TopK/BatchTopK/Matryoshka k when --target-l0 is not given")
    parser.add_argument("--prefix-sizes", type=int, nargs="+", default=None,
                        help="matryoshka_batchtopk: the nested dictionary widths (default d_sae/16, /8, /4, /2)")
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
    parser.add_argument("--device", default=None, help="default: CUDA if present (under torchrun: this rank's GPU)")
    parser.add_argument("--model-dtype", choices=["float32", "bfloat16"], default="float32",
                        help="dtype of the model forward that fills the store (bfloat16: for GPUs; a different store)")
    parser.add_argument("--dist-timeout", type=float, default=1800.0,
                        help="seconds any rank waits for the others before failing (torchrun runs only)")
    parser.add_argument("--sweep", nargs="+", default=None, metavar="FIELD=V1,V2",
                        help="train one SAE per combination of these config values in one pass over the store "
                        "(e.g. k=16,32,64; hidden-dim means d_sae)")
    parser.add_argument("--sweep-file", type=Path, default=None,
                        help="a JSON list of members' config overrides (see saelab.train.sweep_spec)")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.hook, args.hooks, args.layers)) > 1:
        parser.error("give one of --hook, --hooks and --layers")
    if args.sweep and args.sweep_file:
        parser.error("give --sweep or --sweep-file, not both")
    if (args.sweep or args.sweep_file) and (args.hooks or args.layers or args.target_l0 is not None):
        parser.error("a sweep trains at one hook and sets each member's sparsity itself: drop --layers/--hooks "
                     "and --target-l0")
    return args


def hooks_of(args: argparse.Namespace, default_hook: str) -> list[str]:
    """The hooks to train SAEs on, in the order given."""
    if args.hooks:
        hooks = list(args.hooks)
    elif args.layers:
        hooks = [f"blocks.{layer}.hook_resid_pre" for layer in args.layers]
    else:
        hooks = [args.hook or (f"blocks.{args.layer}.hook_resid_pre" if args.layer is not None else default_hook)]
    if len(set(hooks)) != len(hooks):
        raise SystemExit(f"error: hooks repeat: {hooks}")
    return hooks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from saelab.distributed import join, leave

    world = join(timeout_s=args.dist_timeout)  # None unless torchrun started this process
    logging.basicConfig(level=logging.INFO if world is None or world.is_main else logging.WARNING, format="%(message)s")
    try:
        code = _run(args, world)
    except BaseException:
        leave(finished=False)
        raise
    leave()
    return code


def _run(args: argparse.Namespace, world: World | None) -> int:
    # Heavy imports after argument parsing, so --help is instant.
    import torch

    from saelab import profiles
    from saelab.distributed import split_world, whole_world
    from saelab.train.pipeline import activation_store

    profile = profiles.get(args.profile)
    hooks = hooks_of(args, profile.default_hook)
    everyone = whole_world(world) if world is not None else None
    if everyone is not None:  # ranks launched with different arguments would wait for each other forever
        everyone.agree(vars(args), "the command-line arguments")
    device = args.device or (str(world.device) if world is not None else None)
    # Rank 0 converts and caches the model first, so that the ranks do not all do it at once.
    with everyone.leader_first() if everyone is not None else contextlib.nullcontext():
        model = profile.load_model(device, dtype=getattr(torch, args.model_dtype))
    store_tokens = args.store_tokens or int(args.tokens * 1.06) + 1
    store = activation_store(model, hooks, n_tokens=store_tokens, seed=args.seed, world=world)
    if args.sweep or args.sweep_file:
        from saelab.train.sweep_cli import run_sweep

        base = build_config(
            args, d_in=model.cfg.d_model, steps=max(1, args.tokens // args.batch_size), model_name=model.cfg.model_name,
            hook=hooks[0], dataset=f"saelab offline mix, {store.n_rows('all')} tokens (store {store.key})",
        )  # fmt: skip
        return run_sweep(args, model, store, base, world)
    if world is None:
        results = {hook: _train_one(args, model, store, hook, None, len(hooks) > 1) for hook in hooks}
    else:
        group, replicas = split_world(world, len(hooks))
        result = _train_one(args, model, store, hooks[group], replicas, len(hooks) > 1)
        results = {hooks[group]: result} if replicas.is_leader else {}
    if results:
        from saelab.train.pipeline import summary_table

        table = summary_table({f"{args.activation} @ {hook}": result for hook, result in results.items()})
        print("\n" + table.T.to_string(float_format=lambda v: f"{v:.4f}" if not math.isnan(v) else "-"))
    return 0


def _train_one(args: argparse.Namespace, model: HookedTransformer, store: ActivationStore, hook: str,
               replicas: Replicas | None, several: bool) -> tuple[TrainResult, EvalResult | None]:
    """Train, save and evaluate the SAE of one hook (saving and evaluating on the group's
    leader only); ``several``: one of several SAEs, saved in a folder of its own under --out."""
    from saelab.train.export import save_sae
    from saelab.train.pipeline import evaluate_saved, train_on_store
    from saelab.train.trainer import RunConfig, checkpoint_folder

    steps = max(1, args.tokens // args.batch_size)
    cfg = build_config(
        args, d_in=model.cfg.d_model, steps=steps, model_name=model.cfg.model_name, hook=hook,
        dataset=f"saelab offline mix, {store.n_rows('all')} tokens (store {store.key})",
    )
    run = RunConfig(
        checkpoint_dir=str(checkpoint_folder(cache_dir() / "checkpoints", cfg)),
        checkpoint_every=args.checkpoint_every, resume=args.resume, use_wandb=args.use_wandb,
    )
    calibration_steps = args.calibration_steps or min(steps, 500)
    result = train_on_store(store, cfg, run, target_l0=args.target_l0, calibration_steps=calibration_steps,
                            replicas=replicas)
    if replicas is not None and not replicas.is_leader:
        return result.train, None
    out = (args.out / hook if several else args.out) if args.out else cache_dir() / "saes" / f"{args.activation}-{hook}"
    save_sae(result.sae, out)
    print(f"\nSaved SAE (SAELens format) to {out}")
    evaluation = evaluate_saved(model, out, store, max_sequences=args.eval_sequences) if args.eval_sequences else None
    return result.train, evaluation


def build_config(
    args: argparse.Namespace, *, d_in: int, steps: int, model_name: str, hook: str, dataset: str
) -> TrainConfig:
    """The TrainConfig of ``--activation`` from the arguments. Options that only some
    architectures have (``--k``, ``--jumprelu-threshold``) go to those that have the field."""
    config_class = get_architecture(args.activation).config
    lr = args.lr if args.lr is not None else (2e-3 if steps < 2000 else 4e-4)
    own = {"k": args.k, "jumprelu_init_threshold": args.jumprelu_threshold, "jumprelu_bandwidth": 0.5,
           "prefix_sizes": tuple(args.prefix_sizes or ())}  # fmt: skip
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(
        d_in=d_in, d_sae=args.hidden_dim or 8 * d_in, lr=lr, batch_size=args.batch_size, total_steps=steps,
        lr_warmup_steps=min(100, steps // 10), lr_decay_steps=max(1, steps // 5), seed=args.seed,
        compute_dtype=args.compute_dtype, model_name=model_name, hook_name=hook, device=args.device,
        dataset=dataset, **{name: value for name, value in own.items() if name in names},
    )


if __name__ == "__main__":
    sys.exit(main())
