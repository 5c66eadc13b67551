"""Does steering a category's specialist make generated text look like that category, on prompts
the choice of feature and strength never saw, without wrecking fluency?

For each of the seven categories: the top specialists of the steering SAE are swept on half of
the neutral prompts in data/steering_prompts.txt (AxBench's protocol), the best (feature,
strength) whose perplexity stays within 2x the baseline's is chosen there, and the other half
reports the concept gain (a linear probe on the deepest SAE of the profile, applied to the
generated text) with a bootstrap 95% CI over prompts, the perplexity ratio and the prompt
relevance. A category passes when the CI excludes 0 and the perplexity ratio is at most 2.

    python bench/steering.py [--hook blocks.15.hook_resid_pre] [--top 3] [--tokens 24] [--threads 2]

The defaults are notebook 05's configuration with 24 new tokens instead of the 16 the demo
budget allows there.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

import saelab
from saelab.interventions.category_steering import steer_categories
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.sweep import SweepConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--hook", default=None, help="steering hook (default: the profile's shallowest)")
    parser.add_argument("--top", type=int, default=3, help="candidate specialists per category")
    parser.add_argument("--strengths", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--select-samples", type=int, default=1)
    parser.add_argument("--report-samples", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=24, help="new tokens per continuation")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = saelab.profiles.get(args.profile)
    model = profile.load_model()
    hook = args.hook or profile.hooks[0]
    sae, probe_sae = profile.load_sae(hook), profile.load_sae(profile.hooks[-1])
    data = saelab.load_dataset()
    texts, labels = data["text"].tolist(), data["category"].tolist()
    start = time.perf_counter()
    probe = ConceptProbe.train(model, probe_sae, texts, labels)
    print(
        f"concept probe @ {probe.hook}: held-out window accuracy {probe.test_accuracy:.3f} (chance {probe.chance:.3f})"
    )
    config = SweepConfig(
        strengths=tuple(args.strengths), report_samples=args.report_samples, max_new_tokens=args.tokens
    )
    prompts = saelab.data.load_steering_prompts()
    result = steer_categories(model, sae, probe, texts, labels, prompts, top=args.top, config=config)
    took = time.perf_counter() - start
    pd.set_option("display.width", 200)
    columns = [
        "category",
        "feature",
        "strength",
        "concept_baseline",
        "concept_steered",
        "concept_gain",
        "gain_lo",
        "gain_hi",
        "perplexity_ratio",
        "relevance_baseline",
        "relevance_steered",
        "qualified",
        "passed",
    ]
    print(
        f"\nsteering @ {hook}, top {args.top} specialists x strengths {list(args.strengths)} (x typical max), "
        f"{len(prompts)} prompts ({len(prompts) // 2} choose, {len(prompts) - len(prompts) // 2} report)"
    )
    print(result.table[columns].round(3).to_string(index=False))
    print(
        f"\n{result.n_passed} of {len(result.table)} categories pass (concept CI above 0, perplexity <= 2x); "
        f"{took:.0f} s in all"
    )


if __name__ == "__main__":
    main()
