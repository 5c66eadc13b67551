"""Attribution against ground truth: do gradient estimates predict what zero-ablating a
feature really does? And what does attribution cost next to a plain forward pass?

Prompts: ``--prompts`` texts of the labelled dataset, the shortest of each category in turn
among those with enough tokens, cut to ``--tokens`` tokens (BOS included) plus the text's
actual next token (appended as an input position after the metric, so with zero attribution).
Metrics, read at the last prompt position (``--metrics``, both by default):

- ``logit_diff``: the logit of the clean model's top prediction minus that of its second
  (the metric of Marks et al.), ``logit_diff(-2, top1, top2)``;
- ``logprob``: the log-probability of the text's actual next token, ``next_token_logprob(-2)``.

Accuracy (SAE ``blocks.20.hook_resid_pre`` of the bundled suite): per prompt, the ``--top``
(position, feature) nodes by ``|attribution|``, for grad x act and for integrated gradients
(``--steps``) each; the true effect of each node is ``metric(clean) - metric(feature zeroed at
its position through the error-preserving splice)`` (``ablation_effects``). Reported: Pearson
correlation of attribution and true effect pooled over all prompts, the median per-prompt
Pearson, the pooled Spearman and the share of nodes whose sign is right. Target: IG pooled
Pearson >= 0.8. "IG on grad x act's nodes" scores IG on grad x act's top nodes, which
separates the estimate from the choice of nodes.

Timing (all prompts in one batch): a plain forward pass, ``attribute`` over the four hooks
(one forward and one backward pass), over blocks.20 alone, and integrated gradients over the
four hooks. Each is timed ``--repeats`` times and the best run counts.

    python bench/attribution.py [--prompts 24] [--tokens 24] [--top 50] [--steps 10] [--threads 1]
                                [--metrics logit_diff,logprob]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from scipy import stats

import saelab
from saelab.extract.tokens import tokenize
from saelab.interventions.attribution import ablation_effects, attribute
from saelab.interventions.metrics import Metric, logit_diff, next_token_logprob

HOOK = "blocks.20.hook_resid_pre"


def choose_prompts(model, n_prompts: int, n_tokens: int) -> tuple[torch.Tensor, list[str]]:
    """``[n_prompts, n_tokens + 1]`` ids (the prompt and its next token) and their categories."""
    data = saelab.load_dataset()
    ids = tokenize(model, list(data["text"])).ids
    data = data.assign(ids=ids, n=[len(i) for i in ids])
    data = data.loc[data["n"] > n_tokens].sort_values(by="n", kind="stable")
    queues = {c: list(g["ids"]) for c, g in data.groupby("category", sort=True)}
    rows, categories = [], []
    while len(rows) < n_prompts and any(queues.values()):
        for category, queue in queues.items():
            if queue and len(rows) < n_prompts:
                rows.append(queue.pop(0)[: n_tokens + 1])
                categories.append(category)
    return torch.tensor(rows), categories


def metric_for(model, row: torch.Tensor, name: str) -> Metric:
    if name == "logprob":
        return next_token_logprob(-2)
    with torch.no_grad():
        first, second = model(row)[0, -2].topk(2).indices.tolist()
    return logit_diff(-2, first, second)


def accuracy(model, sae, tokens: torch.Tensor, top: int, steps: int, metric_name: str) -> pd.DataFrame:
    """One row per (prompt, method, node): its attribution and its true ablation effect."""
    records = []
    for i in range(tokens.shape[0]):
        row = tokens[i : i + 1]
        metric = metric_for(model, row, metric_name)
        ig = attribute(model, sae, row, metric, method="integrated_gradients", steps=steps)
        chosen = {"grad_x_act": attribute(model, sae, row, metric).top(top), "integrated_gradients": ig.top(top)}
        union = pd.concat(chosen.values()).loc[:, ["position", "feature"]].drop_duplicates().reset_index(drop=True)
        effects = union.assign(effect=ablation_effects(model, sae, row, metric, union, batch_size=25))
        for method, nodes in chosen.items():
            merged = nodes.merge(effects, on=["position", "feature"])
            records.append(merged.assign(prompt=i, method=method)[["prompt", "method", "attribution", "effect"]])
        # Both methods on the same nodes (grad x act's top), to separate the method from the node choice.
        same = chosen["grad_x_act"][["position", "feature"]].merge(ig.features(), on=["position", "feature"])
        same = same.merge(effects, on=["position", "feature"])
        records.append(same.assign(prompt=i, method="IG on grad x act's nodes")[records[-1].columns])
        print(f"  {metric_name}: prompt {i + 1}/{tokens.shape[0]} done", flush=True)
    return pd.concat(records, ignore_index=True)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for method, part in frame.groupby("method", sort=False):
        attribution, effect = part.loc[:, "attribution"].to_numpy(float), part.loc[:, "effect"].to_numpy(float)
        per_prompt = [np.corrcoef(p["attribution"], p["effect"])[0, 1] for _, p in part.groupby("prompt") if len(p) > 2]
        rows.append(
            {
                "method": method,
                "nodes": len(part),
                "pooled Pearson": np.corrcoef(attribution, effect)[0, 1],
                "median per-prompt Pearson": float(np.median(per_prompt)),
                "pooled Spearman": np.corrcoef(stats.rankdata(attribution), stats.rankdata(effect))[0, 1],
                "sign right": float(np.mean(np.sign(attribution) == np.sign(effect))),
                "mean |effect|": float(np.abs(effect).mean()),
            }
        )
    return pd.DataFrame(rows)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def timings(model, saes: dict, tokens: torch.Tensor, steps: int, repeats: int) -> pd.DataFrame:
    metric = next_token_logprob(-2)

    def plain() -> None:
        with torch.no_grad():
            model(tokens)

    runs = {
        "plain forward (no grad)": plain,
        "attribute, grad x act, 4 hooks": lambda: attribute(model, saes, tokens, metric),
        "attribute, grad x act, blocks.20": lambda: attribute(model, saes[HOOK], tokens, metric),
        f"attribute, IG steps={steps}, 4 hooks": lambda: attribute(
            model, saes, tokens, metric, method="integrated_gradients", steps=steps
        ),
    }
    plain()  # warm-up
    seconds = {name: best_time(fn, repeats) for name, fn in runs.items()}
    base = seconds["plain forward (no grad)"]
    return pd.DataFrame(
        {
            "run": list(seconds),
            "seconds": list(seconds.values()),
            "x plain forward": [s / base for s in seconds.values()],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default="logit_diff,logprob", help="comma-separated: logit_diff, logprob")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = saelab.load_model()
    profile = saelab.profiles.get("offline")
    saes = {hook: profile.load_sae(hook, device=model.cfg.device) for hook in profile.hooks}
    tokens, categories = choose_prompts(model, args.prompts, args.tokens)
    print(
        f"{tokens.shape[0]} prompts of {args.tokens} tokens + the next token; categories "
        f"{pd.Series(categories).value_counts().to_dict()}; device {model.cfg.device}, "
        f"{torch.get_num_threads()} threads"
    )
    for metric_name in args.metrics.split(","):
        if metric_name not in ("logit_diff", "logprob"):
            raise SystemExit(f"unknown metric {metric_name!r}; use logit_diff or logprob")
        start = time.perf_counter()
        frame = accuracy(model, saes[HOOK], tokens, args.top, args.steps, metric_name)
        print(
            f"\nAccuracy at {HOOK}, metric {metric_name}, top {args.top} nodes per prompt "
            f"({time.perf_counter() - start:.0f} s)"
        )
        summary = summarise(frame)
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        ig = float(summary.loc[summary["method"] == "integrated_gradients", "pooled Pearson"].iloc[0])
        print(f"IG pooled Pearson {ig:.3f} (target >= 0.8): {'PASS' if ig >= 0.8 else 'MISS'}")
    print(f"\nTiming, all {tokens.shape[0]} prompts in one batch of {tokens.numel()} tokens (best of {args.repeats})")
    print(
        timings(model, saes, tokens, args.steps, args.repeats).to_string(index=False, float_format=lambda v: f"{v:.2f}")
    )


if __name__ == "__main__":
    main()
