"""Each attribution method against the quantity it estimates, and what it costs.

Prompts: ``--prompts`` texts of the labelled dataset, the shortest of each category in turn
among those with enough tokens, cut to ``--tokens`` tokens (BOS included) plus the text's
actual next token (appended as an input position after the metric, so with zero attribution).
Metrics, read at the last prompt position (``--metrics``, both by default):

- ``logit_diff``: the logit of the clean model's top prediction minus that of its second
  (the metric of Marks et al.), ``logit_diff(-2, top1, top2)``;
- ``logprob``: the log-probability of the text's actual next token, ``next_token_logprob(-2)``.

Three checks per metric, each timed:

1. **grad x act against single-node ablation** (SAE ``blocks.20.hook_resid_pre`` of the
   bundled suite, ``attribution_vs_ablation``): per prompt each method's ``--top`` (position,
   feature) nodes by ``|attribution|``; the true effect of each is ``metric(clean) -
   metric(feature zeroed at its position through the error-preserving splice)``. Reported:
   pooled Pearson over all prompts (target >= 0.9 for grad x act), median per-prompt
   Pearson, pooled Spearman, signs right; and beside it the same split by position: position
   1 (the first token after BOS can carry a massive activation) or not, and the metric's own
   position or the positions before it (a node at the metric position reaches the logits
   through no attention average, and its largest effects there are the least linear).
   Integrated gradients is listed too, though a single ablation is not what it estimates.
2. **IG completeness** (``ig_completeness``, the four hooks of the suite, ``--steps``): per
   prompt and hook, the sum of the hook's IG attributions against the metric change of
   patching the whole hook to IG's baseline. Target: within 5% on every prompt (a change
   under 0.1 is judged on its absolute error, 5% of 0.1: see ``CHANGE_FLOOR``). Measured at a
   fixed ``--steps``, then with ``attribute``'s refinement (rows that miss redone at twice the
   steps, up to ``--max-steps``), each timed.
3. **Per-node IG** (``node_path_ig``: one node's own path from clean to removed, midpoint rule)
   on grad x act's top nodes of the first ``--node-prompts`` prompts, per ``--node-steps``:
   Pearson with the true ablation and its time beside the ablations' own.

Timing (all prompts in one batch): a plain forward pass, ``attribute`` over the four hooks
(one forward and one backward pass), over blocks.20 alone, and integrated gradients over the
four hooks. Each is timed ``--repeats`` times and the best run counts.

    python bench/attribution.py [--prompts 24] [--tokens 24] [--top 50] [--steps 10] [--threads N]
                                [--metrics logit_diff,logprob] [--node-prompts 6] [--node-steps 1,2]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from _timing import best_time  # bench/_timing.py, beside this file

import saelab
from saelab.extract.tokens import tokenize
from saelab.interventions.attribution import ablation_effects, attribute
from saelab.interventions.attribution_check import attribution_accuracy, attribution_vs_ablation
from saelab.interventions.attribution_targets import ig_completeness, node_path_ig
from saelab.interventions.metrics import Metric, logit_diff, next_token_logprob

HOOK = "blocks.20.hook_resid_pre"
TOLERANCE = 0.05  # IG completeness: relative error on every prompt and hook
# Where patching the whole hook barely moves the metric, the relative error measures that
# cancellation rather than IG: such rows are judged on their absolute error against 5% of this
# floor (0.005 nats or logits). Both the raw and the judged error are printed.
CHANGE_FLOOR = 0.1


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


def accuracy_views(frame: pd.DataFrame, metric_position: int) -> pd.DataFrame:
    """``attribution_accuracy`` on all nodes, then split by where a node sits: position 1 or
    not, the metric's own position or before it. The views are chosen by position, never by
    the true effect, and the first keeps every node."""
    views = {
        "all nodes": frame,
        "position 1": frame.loc[frame["position"] == 1],
        "without position 1": frame.loc[frame["position"] != 1],
        "at the metric position": frame.loc[frame["position"] == metric_position],
        "before the metric position": frame.loc[frame["position"] < metric_position],
    }
    # a view with too few nodes to correlate (no position-1 node, say) is left out
    parts = [attribution_accuracy(part).assign(nodes_in=name) for name, part in views.items() if len(part) > 2]
    return pd.concat(parts, ignore_index=True).loc[
        :, ["method", "nodes_in", "nodes", "pearson", "median_prompt_pearson", "spearman", "sign_right"]
    ]


def completeness(model, saes: dict, prompts: torch.Tensor, metric: Callable, steps: int, max_steps: int):
    """``ig_completeness`` at a fixed ``steps``, then with the refinement up to ``max_steps``
    (rows that miss redone at twice the steps), each judged and timed."""
    out = []
    for most in (steps, max_steps):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the misses are what this check prints
            frame = ig_completeness(model, saes, prompts, metric, steps=steps, max_steps=most, rtol=TOLERANCE,
                                    atol=TOLERANCE * CHANGE_FLOOR)  # fmt: skip
        out.append((judged(frame), time.perf_counter() - start))
    return out


def judged(frame: pd.DataFrame) -> pd.DataFrame:
    """``judged_error``: the absolute error over ``max(|patched_change|, CHANGE_FLOOR)``."""
    return frame.assign(judged_error=frame["abs_error"] / frame["patched_change"].abs().clip(lower=CHANGE_FLOOR))


def completeness_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per hook, over prompts: the median and max relative error, the max judged error, the
    misses (judged), the changes under the floor, and the most steps used."""
    out = frame.groupby("hook", sort=False).agg(
        median_rel_error=("relative_error", "median"),
        max_rel_error=("relative_error", "max"),
        max_judged_error=("judged_error", "max"),
        misses=("judged_error", lambda e: int((e > TOLERANCE).sum())),
        changes_under_floor=("patched_change", lambda c: int((np.abs(c) < CHANGE_FLOOR).sum())),
        most_steps=("steps", "max"),
    )
    return out.reset_index()


def node_ig_check(model, sae, prompts: torch.Tensor, metric: Callable, top: int, steps_list: list[int]):
    """Per-node IG on grad x act's top nodes against the true ablations: Pearson, the largest
    error and seconds, with the ablations' own seconds as the first row."""
    truth, estimates = [], {s: [] for s in steps_list}
    seconds = dict.fromkeys(["ablation", *steps_list], 0.0)
    for i in range(prompts.shape[0]):
        row = prompts[i : i + 1]
        m = metric(row)
        nodes = attribute(model, sae, row, m).top(top).loc[:, ["position", "feature"]]
        start = time.perf_counter()
        truth.append(ablation_effects(model, sae, row, m, nodes, batch_size=64))
        seconds["ablation"] += time.perf_counter() - start
        for s in steps_list:
            start = time.perf_counter()
            estimates[s].append(node_path_ig(model, sae, row, m, nodes, steps=s, batch_size=64))
            seconds[s] += time.perf_counter() - start
    true = np.concatenate(truth)
    rows = [{"estimate": "single-node ablation (exact)", "pearson": 1.0, "max_abs_error": 0.0,
             "seconds": seconds["ablation"]}]  # fmt: skip
    for s in steps_list:
        est = np.concatenate(estimates[s])
        rows.append({"estimate": f"per-node IG, {s} step{'s' * (s > 1)}", "pearson": np.corrcoef(est, true)[0, 1],
                     "max_abs_error": float(np.abs(est - true).max()), "seconds": seconds[s]})  # fmt: skip
    return pd.DataFrame(rows).assign(nodes=len(true))


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


def show(frame: pd.DataFrame) -> None:
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)


def run_metric(model, saes: dict, tokens: torch.Tensor, name: str, args: argparse.Namespace) -> None:
    def metric(row: torch.Tensor) -> Metric:
        return metric_for(model, row, name)

    start = time.perf_counter()
    frame = attribution_vs_ablation(model, saes[HOOK], tokens, metric, top=args.top, steps=args.steps, progress=False)
    seconds = time.perf_counter() - start
    print(f"\n[{name}] 1. attribution vs single-node ablation at {HOOK}, top {args.top} nodes per method and "
          f"prompt ({seconds:.0f} s: grad x act, IG at {args.steps} steps and the ablations)")  # fmt: skip
    views = accuracy_views(frame, tokens.shape[1] - 2)
    show(views)
    r = float(views.loc[(views["method"] == "grad_x_act") & (views["nodes_in"] == "all nodes"), "pearson"].iloc[0])
    print(f"grad x act pooled Pearson, all nodes {r:.3f} (target >= 0.9): {'PASS' if r >= 0.9 else 'MISS'}")

    (first, fixed_s), (final, refined_s) = completeness(model, saes, tokens, metric, args.steps, args.max_steps)
    print(f"\n[{name}] 2. IG completeness, four hooks: {args.steps} steps ({fixed_s:.0f} s), and refined: rows "
          f"that miss redone at twice the steps up to {args.max_steps} ({refined_s:.0f} s, "
          f"{refined_s / fixed_s:.2f}x)")  # fmt: skip
    print(f"at {args.steps} steps:")
    show(completeness_summary(first))
    print("refined:")
    show(completeness_summary(final))
    misses = first.loc[first["judged_error"] > TOLERANCE]
    if not misses.empty:
        print(f"misses at {args.steps} steps, and refined:")
        refined = {f"{c}_refined": final.loc[misses.index, c] for c in ("ig_sum", "judged_error", "steps")}
        show(misses.drop(columns=["clean", "abs_error", "complete"]).assign(**refined))
    worst, after = first["judged_error"].to_numpy().max(), final["judged_error"].to_numpy().max()
    print(
        f"IG completeness, worst prompt and hook (target <= 5%): at {args.steps} steps {worst:.1%} "
        f"{'PASS' if worst <= TOLERANCE else 'MISS'}; refined {after:.1%} {'PASS' if after <= TOLERANCE else 'MISS'}"
    )

    start = time.perf_counter()
    nodes = node_ig_check(model, saes[HOOK], tokens[: args.node_prompts], metric, args.top, args.node_steps)
    print(f"\n[{name}] 3. per-node IG (each node's own path) on grad x act's top {args.top} nodes of "
          f"{args.node_prompts} prompts ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    show(nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=40, help="IG completeness: rerun misses up to this many steps")
    parser.add_argument("--node-prompts", type=int, default=6, help="prompts for the per-node IG check")
    parser.add_argument("--node-steps", default="1,2", help="comma-separated step counts for per-node IG")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default="logit_diff,logprob", help="comma-separated: logit_diff, logprob")
    args = parser.parse_args()
    args.node_steps = [int(s) for s in args.node_steps.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = args.metrics.split(",")
    if unknown := [m for m in metrics if m not in ("logit_diff", "logprob")]:
        raise SystemExit(f"unknown metric(s) {unknown}; use logit_diff or logprob")
    model = saelab.load_model()
    profile = saelab.profiles.get("offline")
    saes = {hook: profile.load_sae(hook, device=model.cfg.device) for hook in profile.hooks}
    tokens, categories = choose_prompts(model, args.prompts, args.tokens)
    print(
        f"{tokens.shape[0]} prompts of {args.tokens} tokens + the next token; categories "
        f"{pd.Series(categories).value_counts().to_dict()}; device {model.cfg.device}, "
        f"{torch.get_num_threads()} threads"
    )
    for name in metrics:
        run_metric(model, saes, tokens, name, args)
    print(f"\nTiming, all {tokens.shape[0]} prompts in one batch of {tokens.numel()} tokens (best of {args.repeats})")
    show(timings(model, saes, tokens, args.steps, args.repeats))


if __name__ == "__main__":
    main()
