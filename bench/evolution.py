"""Feature matching and feature maps: what they cost beside the model work they sit on.

Target 1: matching two 4,608-feature SAEs by activation over 100k tokens (both nulls
included) takes less than one model forward over those tokens plus the two encodes. Both
are measured here, side by side, on the same texts of the offline corpus mix:

* ``forward + encodes``: the batches run to the deeper hook once (both hooks read from that
  pass) and both SAEs encode them; nothing is kept;
* ``extract``: the same plus the sparse per-token storage the matching reads;
* ``match``: the correlations of every pair of features, and the two shuffled-token nulls.

Target 2: the UMAP of 4,608 decoder directions takes at most about 30 s, timed in a fresh
process (numba compiles UMAP's kernels once per process, which is most of the cost).

    python bench/evolution.py [--tokens 100000] [--hooks blocks.20.hook_resid_pre blocks.15.hook_resid_pre]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

import saelab
from saelab.corpus import CorpusConfig, build_mix
from saelab.evolution import match_features, per_token_pairs
from saelab.evolution.matching import activation_similarities
from saelab.extract import run_hooks, tokenize
from saelab.extract.batches import iter_batches
from saelab.extract.hooks import encode_activations

MAP_SNIPPET = """
import time
t0 = time.perf_counter()
import saelab
from saelab.evolution import MapConfig, feature_map
sae = saelab.profiles.get("offline").load_sae("{hook}", device="cpu")
t1 = time.perf_counter()
points = feature_map(sae, MapConfig(method="{method}"), use_cache=False)
t2 = time.perf_counter()
print(f"{{t1 - t0:.1f}} {{t2 - t1:.1f}} {{points.method}}")
"""


def corpus_texts(model, n_tokens: int) -> list[str]:
    mix = build_mix(CorpusConfig(target_tokens=n_tokens), model.tokenizer)
    texts, total = [], 0
    for text, count in zip(mix.texts, mix.tokens, strict=True):
        texts.append(text)
        total += count
        if total >= n_tokens:
            break
    return texts


def forward_and_encodes(model, saes, texts) -> float:
    hooks = list(saes)
    start = time.perf_counter()
    for batch in iter_batches(tokenize(model, texts), 16, "right", True, 4608):
        acts = run_hooks(model, hooks, batch.tokens, batch.attention_mask)
        for hook, sae in saes.items():
            encode_activations(sae, acts[hook])
    return time.perf_counter() - start


def map_in_fresh_process(hook: str, method: str) -> str:
    code = MAP_SNIPPET.format(hook=hook, method=method)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    load, fit, used = out.stdout.split()[-3:]
    return f"{method:5s} map of the 4,608 directions: {float(fit):.1f} s in a fresh process (used {used}; " \
           f"import + SAE load {float(load):.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--hooks", nargs=2, default=["blocks.20.hook_resid_pre", "blocks.15.hook_resid_pre"])
    parser.add_argument("--skip-map", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    profile = saelab.profiles.get("offline")
    model = profile.load_model(device="cpu")
    saes = {hook: profile.load_sae(hook, device="cpu") for hook in args.hooks}
    texts = corpus_texts(model, args.tokens)
    n_tokens = sum(len(ids) for ids in tokenize(model, texts).ids)
    print(f"threads={torch.get_num_threads()} texts={len(texts)} tokens={n_tokens:,} hooks={args.hooks}")

    with torch.inference_mode():
        reference = forward_and_encodes(model, saes, texts)
    start = time.perf_counter()
    found = saelab.extract_per_token_multi(model, saes, texts, progress=False)
    extract = time.perf_counter() - start
    hook_a, hook_b = args.hooks
    start = time.perf_counter()
    sims = activation_similarities(per_token_pairs(found[hook_a], found[hook_b]))
    match = time.perf_counter() - start
    print(f"forward + encodes {reference:7.1f} s")
    print(f"extract (+ sparse) {extract:6.1f} s")
    print(f"activation match  {match:7.1f} s over {sims.n_tokens:,} tokens (real + 2 nulls): "
          f"{match / reference:.3f}x the forward + encodes")

    for method in ("decoder", "hungarian"):
        start = time.perf_counter()
        matches = match_features(saes[hook_a], saes[hook_b], method=method)
        print(f"{method:9s} match {time.perf_counter() - start:7.1f} s; matched share "
              f"{matches.matched_share:.3f}, null rate {matches.null_rate:.3f}")
    if not args.skip_map:
        for method in ("umap", "pca"):
            print(map_in_fresh_process(hook_a, method))


if __name__ == "__main__":
    main()
