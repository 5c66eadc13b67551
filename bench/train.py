"""Training speed and quality: saelab's trainer vs SAELens's ``SAETrainer``, side by side.

Both trainers see the same cached activations (``blocks.20.hook_resid_pre`` of smollm2-135m,
d_in 576), in the same batches and order, for the same number of steps, and train SAEs of
the same width (d_sae 4608) from the same initial weights. The script prints, from this one
run, tokens/s and held-out explained variance for each side and the ratios ours / SAELens.

Targets: TopK at least 3x SAELens's tokens/s; ReLU at least 1.2x; explained
variance no worse than SAELens's minus 0.02. BatchTopK (against SAELens's
``BatchTopKTrainingSAE``) runs TopK's sparse kernels and borrows TopK's speed target.

    python bench/train.py                                   # topk and relu, 300 steps of 4096
    python bench/train.py --activation all                  # topk, relu and batchtopk
    python bench/train.py --activation topk --steps 100     # quicker
    python bench/train.py --steps 20 --tokens 60000 --batch-size 1024   # smoke run

The default run trains four SAEs of 300 x 4096 tokens; on 2 CPU cores expect about half an
hour (SAELens's side alone runs at ~2,200 tokens/s for TopK and ~2,700 for ReLU), plus the
activation cache on the first run.

Activations. They come from saelab's activation store (``saelab.store.build_store`` over the
offline corpus mix, fp16 shards under ``saelab._util.paths.cache_dir()/activations``). The FIRST
run with a given ``--tokens``/``--hook`` runs the model to build it: on 2 CPU cores the
forward runs at ~500 tokens/s, so the default 250k tokens take ~8 minutes; later runs reuse
the store in seconds. Everything is then loaded into memory once as fp32; the last
``--held-out`` share of sequences is never trained on and measures explained variance.

How the comparison is kept fair:

* **Data.** One seeded order of row indices (a fresh permutation per epoch); batch ``i`` is
  the same tensor for both trainers. Gathering it costs the same on both sides.
* **Initial weights.** SAELens's SAE gets ours: ``W_enc``, ``W_dec`` (unit-norm rows,
  ``W_enc = W_dec.T``), ``b_enc = 0``, and ``b_dec`` = the geometric median of the first batch
  (what our trainer does at step 0).
* **Hyperparameters.** Same lr (per activation, see below), Adam betas (eps is Adam's default 1e-8 on both), the same
  linear warm-up and linear decay to 0 (SAELens: ``lr_scheduler_name="constant"`` with
  ``lr_warm_up_steps``/``lr_decay_steps``, ``lr_end=lr``), same k, same L1 coefficient (both
  penalise ``sum_i f_i * ||W_dec[i]||``, no L1 warm-up; see below), same AuxK coefficient and
  ``k_aux = d_in // 2`` (SAELens hard-codes it), and the same dead-latent window: SAELens
  counts steps (dead when unfired for more than ``dead_feature_window`` steps), we count
  tokens, so ours is ``(window + 1) * batch_size``. No activation normalisation on either side.
* **BatchTopK** follows the TopK rules (same k, AuxK coefficient, ``k_aux``, dead window,
  decoder norms), plus the same ``topk_threshold_lr`` for the inference threshold, a moving
  average of each batch's smallest kept activation on both sides.
* **Held-out evaluation** uses each side's SAE as it is exported: ours through
  ``encode``/``decode``, SAELens's through ``save_inference_model`` and ``SAE.load_from_disk``
  (for BatchTopK both are then JumpReLU SAEs with the learned threshold, not batch top-k).
* **Decoder norms.** SAELens TopK keeps its default ``rescale_acts_by_decoder_norm=True``
  (it trains as if decoder rows were unit norm); ours renormalises the rows after each step.
  It also keeps its default dense activations: ``use_sparse_activations=True`` fails in the
  backward pass on CPU with torch 2.13 (``aten::view`` has no SparseCPU kernel).
  For ReLU both use the decoder-norm-weighted L1 and leave the norms free.
* **Gradient clipping.** SAELens clips the gradient norm to 1.0 every step (hard-coded in
  ``SAETrainer._train_step``); ours clips only when ``grad_clip_norm`` is set, which this
  bench does (``--grad-clip``, default 1.0) so both optimise the same way. Without it, in a
  60-step TopK run (batch 1024) SAELens reached held-out EV 0.667 against our 0.632, and
  with its clipping patched out 0.632 as well, equal to ours to four decimals.
* **ReLU's sparsity.** Our ReLU kernel works on the active latents only while they are
  few (``saelab.train.relu.RELU_SPARSE_MAX_DENSITY``), so its speed depends on how sparse
  the SAE gets, and a fair test needs a realistic one. ReLU's defaults are
  ``RELU_L1_COEFFICIENT`` and ``RELU_LR`` (both trainers get them; TopK keeps lr 4e-4): the
  default 300-step run then ends at a held-out L0 of ~80 (EV ~0.79). The library default
  coefficient of 5 left ~2,000 of 4,608 latents active per token, a dense code no sparse
  kernel can exploit and not a usable SAE. Shorter runs end denser (the L0 falls over the
  whole run), so they measure mostly our dense step. The summary prints both sides'
  held-out L0 next to the speed ratio; they should be close.
* **Differences we cannot remove.** SAELens counts feature firing densely. It trains in fp32
  (``autocast`` off, its default); ``--compute-dtype`` changes only ours.

SAELens without a model: ``SAETrainer(cfg, sae, data_provider=<iterator over our batches>,
evaluator=None, save_checkpoint_fn=None)`` with ``LoggingConfig(log_to_wandb=False)``,
``n_checkpoints=0``, ``save_final_checkpoint=False``. Its trainer consumes any iterator of
``[batch, d_in]`` tensors, so no ``ActivationsStore`` or language model is involved. It
shows its own tqdm bar.

Timing. Only ``fit()`` is timed (construction excluded), and only from the moment the
trainer draws batch ``--untimed-steps`` (so the first steps, which warm allocators and
caches, and our step-0 b_dec initialisation, are excluded on both sides) until ``fit()``
returns. tokens/s = timed steps x batch size / seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import saelab
from saelab._util.device import default_device
from saelab.corpus import CorpusConfig
from saelab.evals import explained_variance
from saelab.store import StoreConfig, build_store
from saelab.train import BatchTopKConfig, TopKConfig, TrainConfig, config_for, make_sae
from saelab.train.base import geometric_median
from saelab.train.registry import get_architecture
from saelab.train.trainer import RunConfig, fit

TARGET_SPEEDUP = {"topk": 3.0, "relu": 1.2, "batchtopk": 3.0}
ACTIVATION_CHOICES = {"both": ("topk", "relu"), "all": ("topk", "relu", "batchtopk")}
EV_TOLERANCE = 0.02
RELU_L1_COEFFICIENT = 25.0
RELU_LR = 2e-3
"""Default ReLU L1 coefficient and lr (both trainers), picked by 300-step runs of our trainer
on 90k cached blocks.20 activations (batch 4096, the default schedule) to end at a realistic
held-out L0. At lr 2e-3, coefficient 15 / 25 / 40 ended at L0 157 / 79 / 66 with explained
variance 0.837 / 0.787 / 0.733. At TopK's lr (4e-4) Adam cannot move the encoder far enough
in 300 steps: L0 fell only to ~970 at coefficient 30 and ~790 at 80 (EV 0.53)."""

Reconstruct = Callable[[Tensor], tuple[Tensor, Tensor]]
"""A trained SAE as ``x -> (feats, x_hat)``, whichever library trained it."""


@dataclass
class Activations:
    train: Tensor  # [rows, d_in] fp32 on the training device
    held_out: Tensor  # [rows, d_in] fp32 on the training device
    source: str


@dataclass
class SideResult:
    trainer: str
    activation: str
    tokens_per_s: float
    timed_seconds: float
    explained_variance: float
    l0: float


# ---------------------------------------------------------------------------------------
# Data.


def load_activations(args: argparse.Namespace, device: torch.device) -> Activations:
    model = saelab.load_model("smollm2-135m", device=device)
    # Packing spends a token per document on separators, which are not stored: ask the mix
    # for a margin over the rows we need.
    corpus = CorpusConfig(target_tokens=int(args.tokens * 1.3))
    store_cfg = StoreConfig(hooks=(args.hook,), n_tokens=args.tokens, held_out_fraction=args.held_out)
    start = time.perf_counter()
    store = build_store(model, corpus, store_cfg)
    seconds = time.perf_counter() - start
    del model
    train = store.load(args.hook, "train", device=device)
    held_out = store.load(args.hook, "held_out", device=device)
    return Activations(train, held_out, f"{store.path} (ready in {seconds:.0f} s)")


def batch_order(n_rows: int, steps: int, batch_size: int, seed: int) -> Tensor:
    """Row indices of every batch, ``[steps, batch_size]``: a fresh permutation per epoch."""
    gen = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / n_rows)
    order = torch.cat([torch.randperm(n_rows, generator=gen) for _ in range(epochs)])
    return order[: steps * batch_size].view(steps, batch_size)


class StampedBatches:
    """Serves batch ``i`` = ``acts[order[i]]`` and notes when batch ``timed_from`` is drawn.

    A trainer draws a batch at the start of each step, so that moment is the start of the
    first timed step; it is the same hook for both trainers' own ``fit()`` loops.
    """

    def __init__(self, acts: Tensor, order: Tensor, timed_from: int):
        self.acts, self.order, self.timed_from = acts, order.to(acts.device), timed_from
        self.t0: float | None = None

    def __call__(self, start: int = 0) -> Iterator[Tensor]:
        """Batches from ``start`` on: our trainer's batch source, and SAELens's iterator."""
        for i in range(start, self.order.shape[0]):
            if i == self.timed_from:
                _sync(self.acts.device)
                self.t0 = time.perf_counter()
            yield self.acts.index_select(0, self.order[i])

    def elapsed(self) -> float:
        _sync(self.acts.device)
        assert self.t0 is not None, "the trainer stopped before the timed steps"
        return time.perf_counter() - self.t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------
# The two trainers.


def learning_rate(args: argparse.Namespace, activation: str) -> float:
    """``--lr`` if given, else the config's default for topk and batchtopk and RELU_LR for relu."""
    if args.lr is not None:
        return args.lr
    return RELU_LR if activation == "relu" else TopKConfig().lr


def our_config(args: argparse.Namespace, activation: str, d_in: int, device: torch.device) -> TrainConfig:
    # Options that only some architectures have go to those that have the field.
    own = {"k": args.k, "l1_coefficient": args.l1_coefficient, "aux_coefficient": args.aux_coefficient,
           "topk_threshold_lr": args.topk_threshold_lr}
    names = {f.name for f in dataclasses.fields(get_architecture(activation).config)}
    return config_for(
        activation,
        **{name: value for name, value in own.items() if name in names},
        d_in=d_in,
        d_sae=args.d_sae,
        dead_tokens_threshold=(args.dead_window + 1) * args.batch_size,
        compute_dtype=args.compute_dtype,
        device=str(device),
        lr=learning_rate(args, activation),
        lr_warmup_steps=args.lr_warmup,
        lr_decay_steps=args.lr_decay,
        total_steps=args.steps,
        batch_size=args.batch_size,
        normalize_activations="none",  # SAELens's side is configured with "none" too
        seed=args.seed,
        hook_name=args.hook,
        grad_clip_norm=args.grad_clip if args.grad_clip > 0 else None,
    )


def run_ours(cfg: TrainConfig, batches: StampedBatches) -> Reconstruct:
    result = fit(cfg, batches, RunConfig(progress=False))
    sae = result.sae.eval()

    def reconstruct(x: Tensor) -> tuple[Tensor, Tensor]:
        feats = sae.encode(x)
        return feats, sae.decode(feats)

    return reconstruct


def saelens_trainer(cfg: TrainConfig, batches: StampedBatches, b_dec: Tensor, args: argparse.Namespace) -> Any:
    """SAELens's SAETrainer on our batches, with our initial weights and matched settings."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.training.sae_trainer import SAETrainer

    common = dict(
        d_in=cfg.d_in,
        d_sae=cfg.d_sae,
        dtype="float32",
        device=cfg.device,
        normalize_activations="none",  # ours is set to "none" too: same inputs on both sides
        metadata=SAEMetadata(model_name=cfg.model_name, hook_name=cfg.hook_name),
    )
    sae = saelens_training_sae(cfg, common)
    ours = make_sae(cfg)  # the same seed gives the very weights our fit() starts from
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc"):
            getattr(sae, name).copy_(getattr(ours, name))
        sae.b_dec.copy_(b_dec)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.total_steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,  # "constant" then linear decay from lr to 0, as ours
        lr_scheduler_name="constant",
        lr_warm_up_steps=cfg.lr_warmup_steps,
        lr_decay_steps=cfg.lr_decay_steps,
        adam_beta1=cfg.adam_betas[0],
        adam_beta2=cfg.adam_betas[1],
        device=str(cfg.device),
        autocast=False,
        dead_feature_window=args.dead_window,
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        logger=LoggingConfig(log_to_wandb=False),
    )
    return SAETrainer(trainer_cfg, sae, data_provider=batches(0), evaluator=None, save_checkpoint_fn=None)


def saelens_training_sae(cfg: Any, common: dict[str, Any]) -> Any:
    """SAELens's training SAE matching ``cfg`` (k, coefficients), before our weights go in."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    if cfg.activation == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=cfg.k, aux_loss_coefficient=cfg.aux_coefficient, **common))
    if cfg.activation == "batchtopk":
        return BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(
                k=cfg.k, aux_loss_coefficient=cfg.aux_coefficient, topk_threshold_lr=cfg.topk_threshold_lr, **common
            )
        )
    return StandardTrainingSAE(
        StandardTrainingSAEConfig(l1_coefficient=cfg.l1_coefficient, lp_norm=1.0, l1_warm_up_steps=0, **common)
    )


def run_saelens(trainer: Any) -> Reconstruct:
    from sae_lens import SAE

    trained = trainer.fit().eval()
    # The SAE as SAELens ships it (BatchTopK becomes a JumpReLU SAE with its threshold).
    with tempfile.TemporaryDirectory() as folder:
        trained.save_inference_model(folder)
        sae = SAE.load_from_disk(folder, device=str(trained.W_enc.device)).eval()

    def reconstruct(x: Tensor) -> tuple[Tensor, Tensor]:
        feats = sae.encode(x)
        return feats, sae.decode(feats)

    return reconstruct


# ---------------------------------------------------------------------------------------
# Measuring.


@torch.no_grad()
def evaluate(reconstruct: Reconstruct, x: Tensor, chunk: int = 4096) -> tuple[float, float]:
    """Explained variance (saelab.evals, pooled over all held-out tokens) and mean L0."""
    x_hats, active = [], 0.0
    for lo in range(0, x.shape[0], chunk):
        feats, x_hat = reconstruct(x[lo : lo + chunk])
        x_hats.append(x_hat.float())
        active += float((feats != 0).sum())
    return explained_variance(x, torch.cat(x_hats)), active / x.shape[0]


def run_pair(args: argparse.Namespace, activation: str, acts: Activations, order: Tensor) -> list[SideResult]:
    device = acts.train.device
    cfg = our_config(args, activation, acts.train.shape[1], device)
    timed_tokens = (args.steps - args.untimed_steps) * args.batch_size

    def measure(trainer: str, train: Callable[[StampedBatches], Reconstruct]) -> SideResult:
        batches = StampedBatches(acts.train, order, args.untimed_steps)
        reconstruct = train(batches)
        seconds = batches.elapsed()
        ev, l0 = evaluate(reconstruct, acts.held_out)
        return SideResult(trainer, activation, timed_tokens / seconds, seconds, ev, l0)

    ours = measure("saelab", lambda batches: run_ours(cfg, batches))
    # Our fit() sets b_dec to this at step 0; SAELens's trainer starts from it too.
    b_dec = geometric_median(acts.train.index_select(0, order[0].to(device)))
    theirs = measure("SAELens", lambda batches: run_saelens(saelens_trainer(cfg, batches, b_dec, args)))
    return [ours, theirs]


def report(results: list[SideResult]) -> None:
    print()
    print(f"{'activation':<10} {'trainer':<8} {'tokens/s':>10} {'timed s':>9} {'EV held-out':>12} {'L0 held-out':>12}")
    for r in results:
        print(
            f"{r.activation:<10} {r.trainer:<8} {r.tokens_per_s:>10,.0f} {r.timed_seconds:>9.1f} "
            f"{r.explained_variance:>12.4f} {r.l0:>12.1f}"
        )
    print()
    for activation in dict.fromkeys(r.activation for r in results):
        ours, theirs = (
            next(r for r in results if r.activation == activation and r.trainer == t) for t in ("saelab", "SAELens")
        )
        speedup = ours.tokens_per_s / theirs.tokens_per_s
        ev_gap = ours.explained_variance - theirs.explained_variance
        target = TARGET_SPEEDUP[activation]
        print(
            f"{activation:<5} speed ours/SAELens = {speedup:5.2f}x (target >= {target}x): "
            f"{'PASS' if speedup >= target else 'MISS'};  "
            f"EV ours - SAELens = {ev_gap:+.4f} (target >= -{EV_TOLERANCE}): "
            f"{'PASS' if ev_gap >= -EV_TOLERANCE else 'MISS'};  "
            f"L0 ours / SAELens = {ours.l0:.1f} / {theirs.l0:.1f}"
        )


def parse_args() -> argparse.Namespace:
    defaults = BatchTopKConfig()  # TopK's defaults, plus topk_threshold_lr
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activation", choices=("topk", "relu", "batchtopk", *ACTIVATION_CHOICES), default="both",
                        help="both: topk and relu; all: topk, relu and batchtopk")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per trainer")
    parser.add_argument("--untimed-steps", type=int, default=None, help="first steps left out of the timing "
                        "(default: min(10, steps // 4))")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=250_000, help="activation rows in the cache (train + held-out)")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of sequences kept out of training")
    parser.add_argument("--hook", default="blocks.20.hook_resid_pre")
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--k", type=int, default=defaults.k)
    parser.add_argument("--l1-coefficient", type=float, default=RELU_L1_COEFFICIENT,
                        help="relu: weight of the decoder-norm-weighted L1 penalty, both trainers")
    parser.add_argument("--aux-coefficient", type=float, default=defaults.aux_coefficient)
    parser.add_argument("--topk-threshold-lr", type=float, default=defaults.topk_threshold_lr,
                        help="batchtopk: rate of the inference threshold's moving average, both trainers")
    parser.add_argument("--dead-window", type=int, default=None, help="steps without firing before a latent counts "
                        "as dead (default: our default of 500k tokens, in batches)")
    parser.add_argument("--lr", type=float, default=None, help=f"Adam lr, both trainers (default: "
                        f"{defaults.lr} for topk and batchtopk, the configs'; {RELU_LR} for relu)")
    parser.add_argument("--lr-warmup", type=int, default=None, help="default: steps // 10")
    parser.add_argument("--lr-decay", type=int, default=None, help="default: steps // 5")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="ours only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grad-clip", type=float, default=1.0,
                        help="ours: clip the gradient norm like SAELens (0: off)")
    args = parser.parse_args()
    if args.untimed_steps is None:
        args.untimed_steps = min(10, args.steps // 4)
    if not 0 <= args.untimed_steps < args.steps:
        parser.error(f"--untimed-steps must be in [0, steps={args.steps})")
    if args.dead_window is None:
        args.dead_window = max(1, defaults.dead_tokens_threshold // args.batch_size)
    # SAELens's warm-up is a LinearLR over warm_up - 1 iterations, so use 0 or at least 2.
    args.lr_warmup = args.steps // 10 if args.lr_warmup is None else args.lr_warmup
    args.lr_warmup = 0 if args.lr_warmup < 2 else args.lr_warmup
    args.lr_decay = args.steps // 5 if args.lr_decay is None else args.lr_decay
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    print(f"Loading activations ({args.tokens:,} tokens at {args.hook}); the first run with these settings "
          f"runs the model to build the cache (~500 tokens/s on 2 CPU cores), later runs reuse it.", flush=True)
    acts = load_activations(args, device)
    activations = ACTIVATION_CHOICES.get(args.activation, (args.activation,))
    order = batch_order(acts.train.shape[0], args.steps, args.batch_size, args.seed)
    epochs = args.steps * args.batch_size / acts.train.shape[0]
    print(f"cache: {acts.source}")
    print(f"device={device} threads={torch.get_num_threads()} train rows={acts.train.shape[0]:,} "
          f"held-out rows={acts.held_out.shape[0]:,} d_in={acts.train.shape[1]} d_sae={args.d_sae}")
    lrs = ", ".join(f"{a} {learning_rate(args, a):g}" for a in activations)
    print(f"steps={args.steps} (first {args.untimed_steps} untimed) batch={args.batch_size} (~{epochs:.1f} epochs) "
          f"lr=({lrs}) warm-up={args.lr_warmup} decay={args.lr_decay} k={args.k} relu-l1={args.l1_coefficient} "
          f"aux={args.aux_coefficient:.4g} dead-window={args.dead_window} steps; ours compute={args.compute_dtype}, "
          "SAELens fp32", flush=True)
    results = []
    for activation in activations:
        results.extend(run_pair(args, activation, acts, order))
    report(results)


if __name__ == "__main__":
    main()
