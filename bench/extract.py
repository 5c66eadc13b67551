"""Extraction throughput vs a bare model forward to the same hook, measured side by side.

Target: the SAE encode + masking + pooling overhead is at most 15% of the forward
time. Both sides see the same texts in the same length-sorted batches; each is timed
``--repeats`` times, interleaved, and the best run counts (least disturbed by other load).

    python bench/extract.py [--hook blocks.20.hook_resid_pre] [--d-sae 4608] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

import saelab
from saelab.extract import hook_activations, tokenize
from saelab.extract.batches import iter_batches


def make_sae(d_in: int, d_sae: int, hook: str) -> StandardSAE:
    # Random weights cost exactly what trained ones do; the bench measures time, not meaning.
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook, model_name="smollm2-135m"))
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1 / 200)
        sae.b_enc.fill_(-1.0)
    return sae.eval()


def bare_forward(model, hook, tokenized, batch_size, d_sae) -> None:
    for batch in iter_batches(tokenized, batch_size, "right", True, d_sae):
        hook_activations(model, hook, batch.tokens, batch.attention_mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hook", default="blocks.20.hook_resid_pre")
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pooling", default="mean")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = saelab.load_model(device="cpu" if not torch.cuda.is_available() else None)
    sae = make_sae(model.cfg.d_model, args.d_sae, args.hook).to(model.cfg.device)
    texts = saelab.load_dataset()["text"].tolist()
    tokenized = tokenize(model, texts)
    n_tokens = sum(len(ids) for ids in tokenized.ids)
    print(f"device={model.cfg.device} threads={torch.get_num_threads()} texts={len(texts)} tokens={n_tokens} "
          f"hook={args.hook} d_sae={args.d_sae} batch_size={args.batch_size}")

    # Warm-up both paths once (allocator, kernels).
    bare_forward(model, args.hook, tokenized, args.batch_size, args.d_sae)
    saelab.extract_features(model, sae, texts[:8], batch_size=args.batch_size)

    forward_times, extract_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bare_forward(model, args.hook, tokenized, args.batch_size, args.d_sae)
        forward_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        saelab.extract_features(model, sae, texts, pooling=args.pooling, batch_size=args.batch_size, progress=False)
        extract_times.append(time.perf_counter() - start)

    fwd, ext = min(forward_times), min(extract_times)
    overhead = (ext - fwd) / fwd
    print(f"bare forward to hook : {n_tokens / fwd:8.0f} tokens/s  "
          f"({fwd:.2f} s, runs {[round(t, 2) for t in forward_times]})")
    print(f"extract_features     : {n_tokens / ext:8.0f} tokens/s  "
          f"({ext:.2f} s, runs {[round(t, 2) for t in extract_times]})")
    print(f"overhead (SAE + masking + pooling) = {overhead:+.1%} of forward time  (target <= +15%): "
          f"{'PASS' if overhead <= 0.15 else 'MISS'}")


if __name__ == "__main__":
    main()
