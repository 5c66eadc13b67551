"""Wall time of ``saelab.analysis.specialists`` at the notebooks' scale, split into its stages.

Target: the full statistics (midrank AUROC, permutation p-values with
Besag-Clifford stopping at the default count (184,320 for 4,608 features), BH q-values,
1,000-replicate bootstrap intervals) take seconds, not minutes: total < 30 s for
7 categories x 20 texts and a 4,608-feature SAE.

The activations are synthetic but shaped like pooled SAE features: non-negative and sparse
(each feature active on a share of texts drawn log-uniformly around 5%, log-normal values
when active), plus ``--planted`` specialists per category (active on most of its texts and
rarely elsewhere) whose recovery is reported beside the timings. Each stage is timed
``--repeats`` times and the best run counts (least disturbed by other load).

    python bench/analysis.py [--d-sae 4608] [--per-category 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from saelab import analysis
from saelab.analysis import significance
from saelab.analysis.specialists import default_permutations

CATEGORIES = ["Python", "URLs", "Math", "Non-English", "Social", "Formal", "Conversational"]


def synthetic_feats(n_per_category: int, d_sae: int, planted: int, seed: int) -> tuple[np.ndarray, list[str], dict]:
    """Sparse non-negative [n_texts, d_sae] activations and the planted specialists."""
    rng = np.random.default_rng(seed)
    labels = [c for c in CATEGORIES for _ in range(n_per_category)]
    codes = np.repeat(np.arange(len(CATEGORIES)), n_per_category)
    n = len(labels)
    density = np.exp(rng.uniform(np.log(0.002), np.log(0.25), d_sae))  # mean ~ 0.05
    active = rng.random((n, d_sae)) < density
    feats = np.where(active, rng.lognormal(0.0, 1.0, (n, d_sae)), 0.0).astype(np.float32)
    truth = {}
    chosen = rng.choice(d_sae, (len(CATEGORIES), planted), replace=False)
    for c, name in enumerate(CATEGORIES):
        for f in chosen[c]:
            inside = codes == c
            fires = np.where(inside, rng.random(n) < 0.8, rng.random(n) < 0.02)
            feats[:, f] = np.where(fires, rng.lognormal(1.0, 0.5, n) * np.where(inside, 1.0, 0.3), 0.0)
            truth[(name, int(f))] = True
    return feats, labels, truth


def time_stages(
    feats: np.ndarray, labels: list[str], n_permutations: int, n_bootstrap: int, seed: int
) -> dict[str, float]:
    """Each stage exactly as specialists() runs it, timed on its own."""
    codes, names = pd.factorize(pd.Series(labels))
    chosen = list(range(len(names)))
    times = {}
    start = time.perf_counter()
    ranks = significance.midranks(feats)
    auroc = significance.auroc_by_category(ranks, codes, len(names))
    times["ranks + auroc"] = time.perf_counter() - start
    start = time.perf_counter()
    perm = significance.permutation_pvalues(ranks, codes, chosen, n_permutations=n_permutations, seed=seed)
    times["permutations"] = time.perf_counter() - start
    start = time.perf_counter()
    significance.benjamini_hochberg(perm.p_value)
    times["bh"] = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for c in chosen:
        top = np.argsort(-auroc[c], kind="stable")[:5]
        significance.bootstrap_auroc_ci(
            feats[codes == c][:, top], feats[codes != c][:, top], n_bootstrap=n_bootstrap, rng=rng
        )
    times["bootstrap (top 5 per category)"] = time.perf_counter() - start
    times["_pairs_run_to_end"] = float((~perm.stopped).sum())
    times["_permutations_total"] = float(perm.n_run.sum())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--per-category", type=int, default=20)
    parser.add_argument("--planted", type=int, default=3, help="planted specialists per category")
    parser.add_argument("--n-permutations", type=int, default=None,
                        help="default: what specialists() uses, default_permutations(d_sae)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.n_permutations is None:
        args.n_permutations = default_permutations(args.d_sae)
    feats, labels, truth = synthetic_feats(args.per_category, args.d_sae, args.planted, args.seed)
    print(f"threads={torch.get_num_threads()} texts={len(labels)} categories={len(CATEGORIES)} d_sae={args.d_sae} "
          f"active={np.mean(feats > 0):.1%} n_permutations={args.n_permutations} n_bootstrap={args.n_bootstrap}")

    runs = [time_stages(feats, labels, args.n_permutations, args.n_bootstrap, args.seed) for _ in range(args.repeats)]
    stages = [s for s in runs[0] if not s.startswith("_")]
    for stage in stages:
        print(f"  {stage:32s} {min(r[stage] for r in runs):7.2f} s  (runs {[round(r[stage], 2) for r in runs]})")
    print(f"  permutations run: {runs[0]['_permutations_total']:.3g} over {len(CATEGORIES) * args.d_sae} pairs "
          f"({runs[0]['_pairs_run_to_end']:.0f} pairs ran all {args.n_permutations})")

    end_to_end = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        table = analysis.specialists(feats, labels, n_permutations=args.n_permutations,
                                     n_bootstrap=args.n_bootstrap, seed=args.seed)  # fmt: skip
        end_to_end.append(time.perf_counter() - start)
    total = min(end_to_end)
    columns = zip(table["category"], table["feature"], table["is_specialist"], strict=True)
    found = {(category, int(feature)) for category, feature, flagged in columns if flagged}
    print(f"specialists() end to end: {total:.2f} s (runs {[round(t, 2) for t in end_to_end]})  (target < 30 s): "
          f"{'PASS' if total < 30 else 'MISS'}")
    reported = set(zip(table["category"], table["feature"], strict=True))
    planted = table.set_index(["category", "feature"]).loc[[key for key in truth if key in reported]]
    print(f"planted specialists among their category's top {table['rank'].max()}: {len(planted)}/{len(truth)}; "
          f"with q < 0.05: {(planted.q_value < 0.05).sum()}; with auroc >= 0.8: {(planted.auroc >= 0.8).sum()}")
    print(f"planted specialists flagged: {len(found & set(truth))}/{len(truth)}; "
          f"other flagged rows: {len(found - set(truth))}; "
          f"categories with >= 1 specialist: {table.loc[table.is_specialist, 'category'].nunique()}/{len(CATEGORIES)}")


if __name__ == "__main__":
    main()
