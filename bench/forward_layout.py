"""The model's weights stored as TransformerLens's forward reads them, against its own layout.

    python bench/forward_layout.py                   # offline profile (SmolLM2-135M)
    python bench/forward_layout.py --profile gemma   # Gemma-3-270M

TransformerLens 3.x copies every MLP, attention and unembedding weight on every forward
(``W.T.contiguous()``, einops rearranges); :func:`saelab._util.weight_layout.use_forward_layouts`
stores them so that those copies become views (``load_model`` does it for every model). Measured
side by side in one process, the same model in both layouts, best of ``--repeats`` each:

* a batch forward of 16 rows x 128 tokens (what extraction, stores and evaluation run);
* sampling 32 new tokens for 8 prompts with the KV cache (what steering runs), one token
  per forward after the prompt;
* whether both layouts give bitwise the same logits.
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_time  # bench/_timing.py, beside this file

import saelab
from saelab._util.weight_layout import transformer_lens_layout
from saelab.interventions.generation import sample_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    laid_out = saelab.profiles.get(args.profile).load_model(device="cpu")
    standard = transformer_lens_layout(laid_out)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(100, min(laid_out.cfg.d_vocab, 40_000), (16, 128), generator=gen)
    bos = getattr(laid_out.tokenizer, "bos_token_id", None) or 0
    prompts = [[bos, *torch.randint(100, 40_000, (n,), generator=gen).tolist()] for n in (4, 6, 8, 10, 5, 7, 9, 11)]

    print(f"{laid_out.cfg.model_name}, {torch.get_num_threads()} threads, best of {args.repeats}")
    rows = []
    new = args.new_tokens
    for label, run in (
        ("forward, 16 x 128 tokens", lambda m: m(batch)),
        (f"sampling {new} tokens x 8 prompts", lambda m: sample_rows(m, prompts, max_new_tokens=new)),
    ):
        with torch.inference_mode():
            before = best_time(lambda: run(standard), args.repeats, warmup=True)  # noqa: B023 (called at once)
            after = best_time(lambda: run(laid_out), args.repeats, warmup=True)  # noqa: B023
        rows.append((label, before, after))
    with torch.inference_mode():
        same = torch.equal(standard(batch[:4]), laid_out(batch[:4]))
        same &= torch.equal(
            sample_rows(standard, prompts, max_new_tokens=8), sample_rows(laid_out, prompts, max_new_tokens=8)
        )
    print(f"\n{'':<34} {'TransformerLens layout':>22} {'forward layout':>15} {'speed-up':>9}")
    for label, before, after in rows:
        print(f"{label:<34} {before:>20.2f} s {after:>13.2f} s {before / after:>8.2f}x")
    print(f"bitwise the same logits and samples: {same}")


if __name__ == "__main__":
    main()
