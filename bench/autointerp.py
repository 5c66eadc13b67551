"""Automated interpretability, measured: the cost of the examples pass against one model
forward plus the SAE encode (side by side, same texts, same machine), the explain and score
throughputs, the score distributions of the suite SAE beside their controls, and the
SAE / ICA / PCA / neurons / random comparison of Cunningham et al. (2023).

Setup: the bundled SAE at ``--hook`` of smollm2-135m. Examples come from an activation store
of the offline corpus mix (``--store-tokens`` rows, built or reused by its cache key), reopened
with half of its sequences held out; PCA and ICA are fitted on the other half. The suite SAEs
were trained on a larger store of the same mix, so these documents may be in their training
text; the explain and scoring windows are disjoint all the same.

Stages (``--stages``): ``speed`` (examples pass vs forward+encode on ``--speed-texts`` texts of
the labelled dataset, and the stored-activation pass vs encode alone), ``scores``
(``--features`` SAE features, LLM-free explainers, simulation and embedding scorers),
``llm`` (``--llm-features`` features: the embedded LLM as explainer, and detection and
fuzzing as judge, of its own and of the ngram explanations), ``replication``
(``--replication-features`` per decomposition).

    python bench/autointerp.py [--stages speed scores llm replication] [--features 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import saelab
from saelab import autointerp as ai
from saelab.autointerp.backends.local import LocalBackend
from saelab.extract.batches import pad_rows
from saelab.extract.hooks import encode_activations, hook_activations
from saelab.extract.tokens import tokenize
from saelab.store.reader import ActivationStore
from saelab.train import pipeline

pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 20)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="*", default=["speed", "scores", "llm", "replication"])
    p.add_argument("--hook", default="blocks.20.hook_resid_pre")
    p.add_argument("--store-tokens", type=int, default=100_000)
    p.add_argument("--store", type=Path, default=None, help="an existing activation store at --hook (default: build)")
    p.add_argument("--features", type=int, default=200)
    p.add_argument("--llm-features", type=int, default=16)
    p.add_argument("--replication-features", type=int, default=100)
    p.add_argument("--speed-texts", type=int, default=120)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_autointerp"))
    return p.parse_args()


def speed(model, sae, hook: str, n_texts: int) -> None:
    texts = saelab.load_dataset()["text"].tolist()[:n_texts]
    tokenized = tokenize(model, texts, max_length=256)
    n_tokens = sum(len(r) - 1 for r in tokenized.ids)
    pad = int(model.tokenizer.pad_token_id or 0)
    began = time.perf_counter()
    for start in range(0, len(texts), 16):  # the baseline: one forward to the hook plus the encode
        take = list(range(start, min(len(texts), start + 16)))
        batch = pad_rows(tokenized, take, max(len(tokenized.ids[i]) for i in take), "right", True, pad)
        acts = hook_activations(model, hook, batch.tokens, batch.attention_mask)
        encode_activations(sae, acts[batch.pool_mask])
    baseline = time.perf_counter() - began
    features = sorted(np.random.default_rng(0).choice(sae.cfg.d_sae, 200, replace=False).tolist())
    source = ai.TextSource(model, texts, hook, batch_size=16, max_length=256)
    began = time.perf_counter()
    ai.collect_examples(source, ai.sae_directions(sae), model, features=features, cache=False,
                        progress=False)  # fmt: skip
    ours = time.perf_counter() - began
    print(f"\n## examples pass over {n_tokens:,} tokens of {n_texts} texts (200 features)")
    print(f"forward + encode: {baseline:.1f} s ({n_tokens / baseline:.0f} tok/s); examples pass: {ours:.1f} s "
          f"({n_tokens / ours:.0f} tok/s); ratio pass / (forward + encode) = {ours / baseline:.2f}")  # fmt: skip


def store_speed(model, sae, store: ActivationStore, hook: str) -> None:
    source = ai.StoreSource(store, hook, "held_out")
    began = time.perf_counter()
    for i in range(source.n_chunks):
        chunk = source.chunk(i)
        encode_activations(sae, chunk.acts[chunk.valid])
    baseline = time.perf_counter() - began
    features = sorted(np.random.default_rng(0).choice(sae.cfg.d_sae, 200, replace=False).tolist())
    began = time.perf_counter()
    ai.collect_examples(source, ai.sae_directions(sae), model, features=features, cache=False,
                        progress=False)  # fmt: skip
    ours = time.perf_counter() - began
    print(f"stored activations ({source.n_tokens:,} held-out tokens): read + encode {baseline:.1f} s; "
          f"examples pass {ours:.1f} s (ratio {ours / baseline:.2f}; no model forward at all)")  # fmt: skip


def throughput(frame: pd.DataFrame, label: str) -> None:
    for explainer, part in frame.groupby("explainer"):
        explain = part["seconds"].mean()
        score = part["score_seconds"].dropna().mean()
        print(f"{label} {explainer}: explain {60 / explain:.0f} features/min; "
              f"score {60 / score:.1f} features/min (explanation + shuffled control)")  # fmt: skip


def scores(examples, out: Path) -> None:
    embedder = ai.load_embedder()
    frames = {}
    for scorers in (("simulation",), ("embedding",)):
        path = out / f"scores_{scorers[0]}.jsonl"
        cfg = ai.AutointerpConfig(explainers=("top_tokens", "ngram_pattern"), scorers=scorers)
        frames[scorers[0]] = ai.run_autointerp(examples, path, config=cfg, embedder=embedder, progress=False)
        throughput(frames[scorers[0]], scorers[0])
    for name, frame in frames.items():
        print(f"\n## {name}: {len(examples)} SAE features, score beside shuffled and all-negative controls")
        print(ai.score_summary(frame).round(3).to_string(index=False))
        skipped = frame[frame["skipped"] != ""]
        print(f"skipped: {len(skipped)} (never fired in the held-out pass)")
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            row = frame.groupby("explainer")[f"score_{name}"].quantile(q).round(3).to_dict()
            print(f"  quantile {q}: {row}")


def llm(model, examples, out: Path, n: int) -> None:
    backend = LocalBackend(model)
    subset = ai.ExampleSet(examples.key, examples.decomposition, examples.source, examples.config,
                           examples.n_tokens, dict(list(examples.examples.items())[:n]))  # fmt: skip
    cfg = ai.AutointerpConfig(explainers=("llm", "ngram_pattern"), scorers=("detection", "fuzzing"))
    frame = ai.run_autointerp(subset, out / "llm.jsonl", config=cfg, backend=backend, progress=False)
    throughput(frame, "llm judge")
    print(f"\n## the embedded LLM on {n} SAE features: as explainer, and as detection/fuzzing judge")
    print(ai.score_summary(frame).round(3).to_string(index=False))
    llm_rows = frame.loc[frame["explainer"] == "llm", ["feature", "explanation", "skipped"]]
    print(llm_rows.to_string(index=False))


def replication(model, sae, store: ActivationStore, out: Path, n: int) -> None:
    cfg = ai.ReplicationConfig(n_features=n)
    auto = ai.AutointerpConfig(explainers=("top_tokens", "ngram_pattern"), scorers=("simulation", "embedding"))
    began = time.perf_counter()
    frame = ai.compare_decompositions(model, sae, store, out / "replication.jsonl", config=cfg, autointerp=auto,
                                      progress=False)  # fmt: skip
    print(f"\n## replication: {n} directions per decomposition ({time.perf_counter() - began:.0f} s)")
    table = ai.replication_table(frame)
    print(table.round(3).to_string(index=False))
    for explainer in ("top_tokens", "ngram_pattern"):
        for metric in ("simulation", "embedding"):
            print(ai.paper_ordering_holds(table, explainer, metric).to_string())


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model = saelab.load_model("smollm2-135m", device="cpu")
    sae = saelab.load_sae("saelab-smollm2-135m", args.hook, device="cpu")
    path = args.store or pipeline.activation_store(model, [args.hook], n_tokens=args.store_tokens).path
    store = ActivationStore.open(path, held_out_fraction=0.5)
    print(f"store: {store}")
    if "speed" in args.stages:
        speed(model, sae, args.hook, args.speed_texts)
        store_speed(model, sae, store, args.hook)
    features = sorted(np.random.default_rng(1).choice(sae.cfg.d_sae, args.features, replace=False).tolist())
    if {"scores", "llm"} & set(args.stages):
        examples = ai.collect_examples(ai.StoreSource(store, args.hook), ai.sae_directions(sae), model,
                                       features=features, progress=False)  # fmt: skip
        if "scores" in args.stages:
            scores(examples, args.out)
        if "llm" in args.stages:
            llm(model, examples, args.out, args.llm_features)
    if "replication" in args.stages:
        replication(model, sae, store, args.out, args.replication_features)


if __name__ == "__main__":
    main()
