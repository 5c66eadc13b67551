"""SAE steering beside its baselines, on prompts the choice never saw (AxBench's protocol).

For each of the seven categories, on the select half of the neutral prompts in
data/steering_prompts.txt: SAE features (the best specialist and the best output features
over the profile's steering hooks, added at each strength, the best output feature also
clamped), DiffMean (category minus rest at the hook its output score prefers) and prompting
(an instruction before the prompt) each choose their arm under one rule (the upper end of
the perplexity ratio's 95% CI within 2x, distinct-2 at least half the baseline's); the
report half then measures each chosen arm, a random SAE feature at the SAE arm's hook and
strength, and no edit. A category passes when the concept gain's CI excludes 0 at
perplexity within 2x and without degeneration. Suppression: the chosen SAE feature and the
DiffMean vector subtracted on prompts that invite the category (data/inviting_prompts.tsv).

    python bench/steering.py [--tokens 16] [--threads 2] [--no-suppression] [--demo] [--out DIR]

The defaults are the library's; ``--demo`` is what notebook 05 runs in ``make demo``.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

import saelab
from saelab.interventions.method_comparison import ComparisonConfig, compare_steering_methods
from saelab.interventions.probe import ConceptProbe

COLUMNS = [
    "category", "method", "arm", "concept_baseline", "concept_steered", "gain", "gain_lo", "gain_hi",
    "perplexity_ratio", "distinct_ratio", "relevance_baseline", "relevance_steered", "qualified", "passed",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profile", default="offline")
    defaults = ComparisonConfig()
    parser.add_argument("--tokens", type=int, default=defaults.max_new_tokens, help="new tokens per continuation")
    parser.add_argument("--report-samples", type=int, default=defaults.report_samples)
    parser.add_argument("--no-suppression", action="store_true")
    parser.add_argument("--demo", action="store_true", help="notebook 05's smaller setting (ComparisonConfig.demo())")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for every frame as CSV (SteeringComparison.save)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = saelab.profiles.get(args.profile)
    model = profile.load_model()
    saes = {hook: profile.load_sae(hook) for hook in profile.hooks}
    data = saelab.load_dataset()
    texts, labels = data["text"].tolist(), data["category"].tolist()
    start = time.perf_counter()
    probe = ConceptProbe.train(model, saes[profile.hooks[-1]], texts, labels)
    print(
        f"concept probe @ {probe.hook}: held-out window accuracy {probe.test_accuracy:.3f} (chance {probe.chance:.3f})"
    )
    base = ComparisonConfig.demo() if args.demo else defaults
    config = ComparisonConfig.from_dict({**base.to_dict(), "max_new_tokens": args.tokens,
                                         "report_samples": args.report_samples if not args.demo else 1})  # fmt: skip
    prompts = saelab.data.load_steering_prompts()
    inviting = None if args.no_suppression else saelab.data.load_inviting_prompts()
    result = compare_steering_methods(model, saes, probe, texts, labels, prompts, config=config,
                                      suppression_prompts=inviting)  # fmt: skip
    took = time.perf_counter() - start
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(f"\n{len(prompts)} neutral prompts ({len(prompts) // 2} select, {len(prompts) - len(prompts) // 2} report), "
          f"{args.tokens} new tokens, config {config.to_json(indent=None)}")  # fmt: skip
    print("\nSteering, report half:")
    print(result.table[COLUMNS].round(3).to_string(index=False))
    if result.suppression is not None:
        print("\nSuppression on inviting prompts, report half:")
        print(result.suppression[COLUMNS].round(3).to_string(index=False))
    print("\nCategories passed per method:")
    print(result.counts().to_string())
    print("\nCandidates chosen for the select half:")
    chosen = result.candidates.loc[result.candidates["chosen"]]
    print(chosen.round(3).to_string(index=False))
    print(f"\n{took:.0f} s in all")
    if args.out:
        print(f"frames saved in {result.save(args.out)}")


if __name__ == "__main__":
    main()
