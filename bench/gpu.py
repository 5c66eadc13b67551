"""saelab's GPU path, measured side by side in one run: forward, store build, training, SAELens.

    make setup && python bench/gpu.py          # on a CUDA machine: ~5-10 minutes on an H100/H200
    python bench/gpu.py --sections forward,train --steps 200       # a part, quicker
    python bench/gpu.py --suite-tokens 20000000                    # also section 4 (minutes more)
    OMP_NUM_THREADS=1 python bench/gpu.py --smoke                  # tiny sizes, on CPU: ~5 minutes

``make setup`` pins the CPU wheel of torch: on a GPU machine install a CUDA build of the same
version first (``torch.cuda.is_available()`` must be True), or every number is a CPU number,
which the report then says loudly. It starts with the torch and CUDA versions and the GPU's
name and memory; each section prints its own table (a failing one prints its traceback and
the run goes on); the last line sums up the ratios.

1. ``forward``: tokens/s of ``run_hooks`` to blocks.15/20/25.hook_resid_pre of smollm2-135m
   loaded in fp32 and in bf16 (``load_model(dtype=...)``) on 128-token rows packed from the
   labelled texts, per model batch; bf16's parity with fp32 on the same tokens (relative
   error ||a_bf16 - a_fp32|| / ||a_fp32||, mean cosine; BOS and special tokens left out as
   in a store) and the suite SAEs' explained variance on either; a ``build_store`` of
   ``--tokens`` rows at the three hooks per dtype (its manifest's ``build.tokens_per_s``).
2. ``train``: our trainer on that store's blocks.20 rows held in GPU memory (bench/train.py's
   configs, batches and timing), TopK and ReLU, kernel fast / reference, compute fp32 / bf16,
   and ``torch.compile`` of the SAE's ``_train_forward``. The first compile falls in the
   untimed first steps ("wall s" includes it); recompiles later (the AuxK shapes change as
   latents die) are timed, and the compile column counts the graphs.
3. ``saelens``: bench/train.py's ours-vs-SAELens pair (same batches, same initial weights)
   for TopK and ReLU on the same rows, ``--saelens-steps`` steps each, fp32 both sides.
4. ``suite`` (only with ``--suite-tokens N``): a TopK SAE for blocks.20 as the suite trains
   them (k 32, d_sae 4608, lr 1e-3; bf16 compute on CUDA) on N tokens of a fresh store of at
   most ``--suite-store-tokens`` rows (epochs repeat), and its held-out explained variance
   beside the bundled suite SAE's on the same rows (which that SAE, trained on the same
   offline mix, may have seen).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch._dynamo.utils import counters

import saelab
import saelab.train.trainer as trainer_module
from saelab._util.device import default_device
from saelab.corpus import CorpusConfig
from saelab.evals import explained_variance
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import bos_token_id, tokenizer_of
from saelab.saes import BUNDLED_RELEASE, bundled_sae_ids
from saelab.store import ActivationStore, StoreConfig, build_store
from saelab.store.pack import keep_mask, tokenize_corpus
from saelab.train import TopKConfig
from saelab.train.pipeline import train_on_store
from saelab.train.trainer import RunConfig

sys.path.insert(0, str(Path(__file__).parent))
import train as bench_train  # noqa: E402  (bench/train.py, beside this file)

HOOKS = tuple(f"blocks.{layer}.hook_resid_pre" for layer in (15, 20, 25))
TRAIN_HOOK = HOOKS[1]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SECTIONS = ("forward", "train", "saelens", "suite")
VARIANTS = [("fast", "float32", False), ("fast", "bfloat16", False), ("reference", "float32", False),
            ("reference", "bfloat16", False), ("reference", "bfloat16", True), ("fast", "bfloat16", True)]
"""Section 2's (kernel, compute dtype, torch.compile) per activation."""
SIZES: dict[str, tuple[Any, Any, str]] = {  # name: (GPU run, --smoke, what it is)
    "tokens": (250_000, 3_000, "rows per hook of the store of sections 1-3"),
    "steps": (300, 8, "training steps per variant in section 2"),
    "saelens_steps": (200, 6, "steps per trainer in section 3"),
    "batch_size": (4096, 256, "training batch, tokens"),
    "d_sae": (4608, 1152, "SAE width in sections 2-3"),
    "untimed": (10, 2, "first training steps left out of the timing"),
    "seq_len": (128, 32, "tokens per sequence, BOS included (forward timing and stores)"),
    "model_batches": ("32,128", "4", "comma list of forward batch sizes, in sequences"),
    "speed_rows": (1024, 4, "sequences per timed forward pass"),
    "parity_rows": (256, 4, "sequences compared fp32 vs bf16"),
    "min_seconds": (3.0, 0.0, "least time per forward timing"),
}
NOT_GPU = "!" * 100 + "\n!!  NO CUDA DEVICE: every number below is a CPU number, NOT a GPU number.\n" + "!" * 100


@dataclass
class Ctx:
    args: argparse.Namespace
    device: torch.device
    tmp: Path
    store: ActivationStore | None = None
    acts: bench_train.Activations | None = None
    summary: list[str] = field(default_factory=list)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def header(ctx: Ctx) -> None:
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"device {ctx.device}, CPU threads {torch.get_num_threads()}")
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        print(f"GPU: {torch.cuda.get_device_name(ctx.device)}, {props.total_memory / 2**30:.1f} GiB, "
              f"compute capability {props.major}.{props.minor}, bf16 supported: {torch.cuda.is_bf16_supported()}, "
              f"TF32 matmuls allowed: {torch.backends.cuda.matmul.allow_tf32} (off: fp32 below is true fp32)")
    else:
        print(NOT_GPU)
    print(f"sizes: {', '.join(f'{k}={getattr(ctx.args, k)}' for k in SIZES)}", flush=True)


# 1. Model forward, bf16 parity, store build.


def sample_tokens(model: Any, seq_len: int, n_rows: int) -> Tensor:
    """``n_rows`` rows of ``seq_len`` tokens packed from the labelled texts (repeated if short)."""
    texts = saelab.load_dataset()["text"].tolist()
    rows = tokenize_corpus(texts, tokenizer_of(model), seq_len, bos_token_id(model))
    return rows.repeat(math.ceil(n_rows / rows.shape[0]), 1)[:n_rows]


def forward_speed(model: Any, tokens: Tensor, batch: int, min_seconds: float) -> float:
    """Tokens/s of one forward to the three hooks, after a warm-up batch; whole passes over
    ``tokens`` until ``min_seconds`` have gone by."""
    device = torch.device(model.cfg.device)
    run_hooks(model, HOOKS, tokens[:batch])
    sync(device)
    done, start = 0, time.perf_counter()
    while True:
        for lo in range(0, tokens.shape[0], batch):
            run_hooks(model, HOOKS, tokens[lo : lo + batch])
        done += tokens.numel()
        sync(device)
        if time.perf_counter() - start >= min_seconds:
            return done / (time.perf_counter() - start)


def hook_acts(model: Any, tokens: Tensor, batch: int) -> dict[str, Tensor]:
    """Each hook's activations at the positions a store keeps, ``[rows, d]`` fp32."""
    mask = keep_mask(tokens, True, sorted(set(tokenizer_of(model).all_special_ids)))
    out: dict[str, list[Tensor]] = {h: [] for h in HOOKS}
    for lo in range(0, tokens.shape[0], batch):
        acts = run_hooks(model, HOOKS, tokens[lo : lo + batch])
        for hook, act in acts.items():
            out[hook].append(act[mask[lo : lo + batch].to(act.device)].float())
    return {hook: torch.cat(parts) for hook, parts in out.items()}


def timed_store(ctx: Ctx, model: Any, label: str) -> list[Any]:
    args = ctx.args
    extra = {} if args.store_batch is None else {"model_batch_size": args.store_batch}
    cfg = StoreConfig(hooks=HOOKS, n_tokens=args.tokens, seq_len=args.seq_len, held_out_fraction=0.1,
                      cache_root=str(ctx.tmp / "stores"), **extra)
    start = time.perf_counter()
    store = build_store(model, CorpusConfig(target_tokens=int(args.tokens * 1.3) + 10_000), cfg, progress=False)
    sync(ctx.device)
    wall = time.perf_counter() - start
    if label == "fp32":
        ctx.store = store
    build = store.manifest.get("build", {})
    return [label, f"{store.n_rows('all'):,}", cfg.model_batch_size, f"{wall:.1f}",
            f"{build.get('tokens_per_s', float('nan')):,.0f}"]


def section_forward(ctx: Ctx) -> None:
    args, acts, speeds, stores = ctx.args, {}, {}, []
    for label, dtype in DTYPES.items():
        model = saelab.load_model("smollm2-135m", ctx.device, dtype=dtype)
        tokens = sample_tokens(model, args.seq_len, max(args.speed_rows, args.parity_rows))
        for batch in args.model_batches:
            speeds[label, batch] = forward_speed(model, tokens[: args.speed_rows], batch, args.min_seconds)
        acts[label] = hook_acts(model, tokens[: args.parity_rows], max(args.model_batches))
        if label == "fp32" or ctx.device.type == "cuda":  # a bf16 store on CPU would take ages
            stores.append(timed_store(ctx, model, label))
        del model
        free(ctx.device)
    print(f"\nrun_hooks to {', '.join(HOOKS)}; sequences of {args.seq_len} tokens")
    print_table(["model batch", "fp32 tok/s", "bf16 tok/s", "bf16 / fp32"],
                [[b, f"{speeds['fp32', b]:,.0f}", f"{speeds['bf16', b]:,.0f}",
                  f"{speeds['bf16', b] / speeds['fp32', b]:.2f}x"] for b in args.model_batches])
    best = max(args.model_batches)
    ctx.summary.append(f"forward bf16/fp32 {speeds['bf16', best] / speeds['fp32', best]:.2f}x (batch {best})")
    parity(ctx, acts["fp32"], acts["bf16"])
    print(f"\nbuild_store of {args.tokens:,} rows x {len(HOOKS)} hooks (wall s includes building the corpus)")
    print_table(["model", "rows", "model batch", "wall s", "manifest tok/s"], stores)
    if stores:
        ctx.summary.append(f"store build fp32 {stores[0][-1]} tok/s")


@torch.no_grad()
def parity(ctx: Ctx, fp32: dict[str, Tensor], bf16: dict[str, Tensor]) -> None:
    suite = set(bundled_sae_ids())
    rows = []
    for hook in HOOKS:
        a, b = fp32[hook], bf16[hook]
        rel = float((b - a).norm() / a.norm())
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
        evs = ["-", "-", "-"]
        if hook in suite:
            recon = reconstructor(saelab.load_sae(BUNDLED_RELEASE, hook, ctx.device))
            a_hat, b_hat = recon(a)[1].float(), recon(b)[1].float()
            evs = [f"{explained_variance(x, x_hat):.4f}" for x, x_hat in ((a, a_hat), (b, b_hat), (a, b_hat))]
        rows.append([hook, a.shape[0], f"{rel:.2e}", f"{cos:.6f}", *evs])
        if hook == TRAIN_HOOK:
            ctx.summary.append(f"bf16 rel. error at {hook.split('.hook')[0]} {rel:.1e}")
    print(f"\nbf16 parity against fp32 ({next(iter(fp32.values())).shape[0]:,} positions per hook; BOS and special "
          "tokens left out). EV: the bundled suite SAE (fp32) on fp32 acts, on bf16 acts, and its reconstruction "
          "of bf16 acts against the fp32 acts")
    print_table(["hook", "rows", "rel. error", "mean cosine", "EV fp32", "EV bf16", "EV bf16->fp32"], rows)


# 2 and 3. Training: variants of ours; ours vs SAELens.


def ensure_acts(ctx: Ctx) -> bench_train.Activations:
    """blocks.20 of the fp32 store (section 1's, or built now) on the device, fp32."""
    if ctx.acts is None:
        if ctx.store is None:
            model = saelab.load_model("smollm2-135m", ctx.device)
            print(f"store (untimed here): {timed_store(ctx, model, 'fp32')}")
            del model
            free(ctx.device)
        assert ctx.store is not None
        train = ctx.store.load(TRAIN_HOOK, "train", device=ctx.device)
        held_out = ctx.store.load(TRAIN_HOOK, "held_out", device=ctx.device)
        ctx.acts = bench_train.Activations(train, held_out, str(ctx.store.path))
    return ctx.acts


def bench_args(ctx: Ctx, steps: int) -> argparse.Namespace:
    """bench/train.py's settings (its parse_args) for this run's sizes."""
    a = ctx.args
    argv = ["--steps", steps, "--batch-size", a.batch_size, "--d-sae", a.d_sae, "--tokens", a.tokens,
            "--hook", TRAIN_HOOK, "--untimed-steps", min(a.untimed, steps - 1)]
    saved = sys.argv
    sys.argv = ["train.py", *map(str, argv)]
    try:
        return bench_train.parse_args()
    finally:
        sys.argv = saved


@contextlib.contextmanager
def compiled_saes(enabled: bool) -> Iterator[None]:
    """While active, every SAE the trainer makes runs ``torch.compile``d ``_train_forward``."""
    if not enabled:
        yield
        return
    torch._dynamo.reset()  # a fresh cache per run: no recompile limit carried over, no stale graphs
    original = trainer_module.make_sae

    def make(cfg: Any) -> Any:
        sae = original(cfg)
        sae.__dict__["_train_forward"] = torch.compile(sae._train_forward)
        return sae

    trainer_module.make_sae = make
    try:
        yield
    finally:
        trainer_module.make_sae = original


def train_variant(
    ctx: Ctx, args: argparse.Namespace, activation: str, variant: tuple[str, str, bool], order: Tensor
) -> list[Any]:
    kernel, dtype, compiled = variant
    acts = ensure_acts(ctx)
    cfg = bench_train.our_config(args, activation, acts.train.shape[1], ctx.device)
    cfg = dataclasses.replace(cfg, kernel=kernel, compute_dtype=dtype)
    batches = bench_train.StampedBatches(acts.train, order, args.untimed_steps)
    start, graphs = time.perf_counter(), counters["stats"]["unique_graphs"]
    with compiled_saes(compiled):
        reconstruct = bench_train.run_ours(cfg, batches)
    seconds = batches.elapsed()
    wall = time.perf_counter() - start
    graphs = f"yes, {counters['stats']['unique_graphs'] - graphs} graphs" if compiled else "no"
    ev, l0 = bench_train.evaluate(reconstruct, acts.held_out)
    tok_s = (args.steps - args.untimed_steps) * args.batch_size / seconds
    return [activation, kernel, dtype, graphs, tok_s, f"{wall:.1f}", f"{ev:.4f}", f"{l0:.1f}"]


def section_train(ctx: Ctx) -> None:
    acts = ensure_acts(ctx)
    args = bench_args(ctx, ctx.args.steps)
    order = bench_train.batch_order(acts.train.shape[0], args.steps, args.batch_size, args.seed)
    rows = []
    for activation in ("topk", "relu"):
        for variant in [v for v in VARIANTS if ctx.args.compile or not v[2]]:
            try:
                rows.append(train_variant(ctx, args, activation, variant, order))
            except Exception as err:  # a failed compile must not cost the other variants
                rows.append([activation, *variant[:2], "yes" if variant[2] else "no", float("nan"),
                             "-", f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:80]}", "-"])
                print(traceback.format_exc(limit=-4))
            free(ctx.device)
    base = {r[0]: r[4] for r in rows if r[1:4] == ["fast", "float32", "no"]}
    for r in rows:
        r.insert(5, r[4] / base.get(r[0], float("nan")))
    print(f"\n{args.steps} steps of {args.batch_size} (first {args.untimed_steps} untimed), d_sae {args.d_sae}, "
          f"{acts.train.shape[0]:,} train / {acts.held_out.shape[0]:,} held-out rows of {TRAIN_HOOK}; "
          "wall s = the whole fit() (compile included)")
    print_table(["activation", "kernel", "compute", "compile", "tok/s", "vs fast/fp32", "wall s", "EV held-out",
                 "L0"], [[*r[:4], f"{r[4]:,.0f}", f"{r[5]:.2f}x", *r[6:]] for r in rows])
    for activation in base:
        ok = [r for r in rows if r[0] == activation and r[5] > 0]  # failed variants hold nan
        best = max(ok, key=lambda r: r[5])
        bf16 = " ".join(f"{r[5]:.2f}x" for r in ok if r[1:4] == ["fast", "bfloat16", "no"])
        ctx.summary.append(f"{activation} train fast/bf16 {bf16 or 'failed'} of fast/fp32, best {best[1]}/{best[2]}"
                           f"{'' if best[3] == 'no' else '+compile'} {best[5]:.2f}x")


def section_saelens(ctx: Ctx) -> None:
    if importlib.util.find_spec("sae_lens") is None:
        print("sae_lens is not installed: SAELens comparison skipped.")
        return
    acts = ensure_acts(ctx)
    args = bench_args(ctx, ctx.args.saelens_steps)
    order = bench_train.batch_order(acts.train.shape[0], args.steps, args.batch_size, args.seed)
    results = []
    for activation in ("topk", "relu"):
        results.extend(bench_train.run_pair(args, activation, acts, order))
        free(ctx.device)
    print(f"{args.steps} steps of {args.batch_size} (first {args.untimed_steps} untimed), d_sae {args.d_sae}, fp32 "
          "both sides (the targets in the summary lines were set for CPU)")
    bench_train.report(results)
    for activation in ("topk", "relu"):
        ours, theirs = (next(r for r in results if r.activation == activation and r.trainer == t)
                        for t in ("saelab", "SAELens"))
        ctx.summary.append(f"{activation} ours/SAELens {ours.tokens_per_s / theirs.tokens_per_s:.2f}x")


# 4. A suite-style TopK SAE on many tokens vs the bundled one.


def section_suite(ctx: Ctx) -> None:
    args, n = ctx.args, ctx.args.suite_tokens
    if n <= 0:
        print("skipped (pass --suite-tokens N to train a blocks.20 TopK SAE on N tokens)")
        return
    store_rows = min(n, args.suite_store_tokens)
    model = saelab.load_model("smollm2-135m", ctx.device)
    cfg = StoreConfig(hooks=(TRAIN_HOOK,), n_tokens=store_rows, seq_len=128, held_out_fraction=0.05,
                      cache_root=str(ctx.tmp / "suite"))
    start = time.perf_counter()
    store = build_store(model, CorpusConfig(target_tokens=int(store_rows * 1.25) + 10_000), cfg, progress=False)
    build_s = time.perf_counter() - start
    del model
    free(ctx.device)
    batch = 4096
    steps = math.ceil(n / batch)
    train_cfg = TopKConfig(
        d_in=576, d_sae=4608, k=32, lr=1e-3, batch_size=batch, total_steps=steps,
        lr_warmup_steps=min(100, steps // 10), lr_decay_steps=max(1, steps // 5), dead_tokens_threshold=250_000,
        compute_dtype="bfloat16" if ctx.device.type == "cuda" else "float32", device=str(ctx.device),
        hook_name=TRAIN_HOOK,
    )
    start = time.perf_counter()
    sae = train_on_store(store, train_cfg, RunConfig(progress=False)).train.sae
    sync(ctx.device)
    train_s = time.perf_counter() - start
    held_out = store.load(TRAIN_HOOK, "held_out", device=ctx.device)
    suite = saelab.load_sae(BUNDLED_RELEASE, TRAIN_HOOK, ctx.device)
    rows = []
    for name, model_sae in (("ours", sae), ("bundled suite", suite)):
        ev, l0 = bench_train.evaluate(reconstructor(model_sae), held_out)
        rows.append([name, f"{ev:.4f}", f"{l0:.1f}"])
    epochs = steps * batch / store.n_rows("train")
    print(f"store {store.n_rows('all'):,} rows built in {build_s:.0f} s; trained {steps} x {batch} tokens "
          f"(~{epochs:.1f} epochs) in {train_s:.0f} s = {steps * batch / train_s:,.0f} tok/s (store streaming "
          f"included); held-out rows {held_out.shape[0]:,}")
    print_table(["SAE", "EV held-out", "L0"], rows)
    ctx.summary.append(f"suite-style SAE on {n:,} tokens EV {rows[0][1]} vs bundled {rows[1][1]}")


def reconstructor(sae: Any) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    def reconstruct(x: Tensor) -> tuple[Tensor, Tensor]:
        feats = encode_activations(sae, x)
        return feats, sae.decode(feats)

    return reconstruct


def run_section(ctx: Ctx, name: str, fn: Callable[[Ctx], None]) -> None:
    print(f"\n{'=' * 30} section {SECTIONS.index(name) + 1}: {name} {'=' * 30}", flush=True)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    start = time.perf_counter()
    try:
        fn(ctx)
    except Exception as err:
        print(f"!! section {name} FAILED: {type(err).__name__}: {err}\n{traceback.format_exc(limit=-8)}")
        ctx.summary.append(f"{name} FAILED")
    finally:
        free(ctx.device)
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(ctx.device) / 2**30:.1f} GiB" \
        if ctx.device.type == "cuda" else ""
    print(f"({name}: {time.perf_counter() - start:.0f} s{peak})", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU check of the code, not a benchmark)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--device", default=None, help="default: CUDA if available")
    for name, (gpu, smoke, what) in SIZES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(gpu), help=f"{what} ({gpu}; smoke {smoke})")
    parser.add_argument("--store-batch", type=int, default=None, help="StoreConfig.model_batch_size (default its own)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    parser.add_argument("--suite-tokens", type=int, default=0, help="section 4's training tokens (0: skip it)")
    parser.add_argument("--suite-store-tokens", type=int, default=4_000_000, help="section 4's store rows at most")
    args = parser.parse_args()
    for name, (gpu, smoke, _) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else gpu)
    args.model_batches = [int(b) for b in str(args.model_batches).split(",")]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; valid: {list(SECTIONS)}")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device) if args.device else default_device()
    with tempfile.TemporaryDirectory(prefix="saelab-gpu-bench-") as tmp:
        ctx = Ctx(args, device, Path(tmp))
        header(ctx)
        fns = {"forward": section_forward, "train": section_train, "saelens": section_saelens, "suite": section_suite}
        for name in args.sections:
            run_section(ctx, name, fns[name])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (NOT GPU numbers)"
    print(f"\nSUMMARY [{device_name}{', smoke sizes' if args.smoke else ''}]: " + "; ".join(ctx.summary))
    if device.type != "cuda":
        print(NOT_GPU)


if __name__ == "__main__":
    main()
