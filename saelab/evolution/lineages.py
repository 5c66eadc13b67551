"""Lineages through depth: the matches of consecutive hooks chained into one graph.

``trace_lineages({hook: sae, ...})`` matches every pair of consecutive hooks (given shallow to
deep) with :func:`saelab.evolution.match_features`'s similarities, turns each pair's matches
into links and events (:mod:`saelab.evolution.events`: persist, split, merge, birth, death)
and counts the same events on an independent null draw, with the same threshold, so every
count stands beside what unrelated features would give.

Two notions of "lineage", both kept:

* ``Lineages.lineage``: the connected component (union-find) of each (hook, feature) in the
  graph of all links, an id per node. A component can hold "cousins": two features of L that
  merge at L' put everything the other one descends from into the same component.
* :meth:`Lineages.lineage_of`: a feature's own lineage, its ancestors and descendants. It
  follows links forward (to deeper hooks) from the feature and its descendants, and backward
  (to shallower hooks) from the feature and its ancestors; it never turns around, so cousins
  are left out. A feature "persists through depth" when this reaches every hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from saelab._util.config import JsonConfig
from saelab.evolution.events import EVENTS, UnionFind, count_events, event_of_links, links_between
from saelab.evolution.matching import (
    DECODER_NULLS,
    METHODS,
    FeatureMatches,
    Similarities,
    best_matches,
    good,
    matches_from,
    similarities,
)
from saelab.evolution.nulls import threshold_from_null
from saelab.evolution.samples import per_token_pairs
from saelab.evolution.similarity import check_same_width, decoder_width

if TYPE_CHECKING:
    from saelab.extract.per_token import PerTokenFeatures

NODE_COLUMNS = ["hook", "feature", "step", "parent", "similarity"]


@dataclass(frozen=True)
class LineageConfig(JsonConfig):
    """How consecutive hooks are matched when lineages are traced."""

    method: str = "activation"
    """``decoder`` (cosine of decoder directions), ``activation`` (correlation over the same
    tokens) or ``hungarian`` (one-to-one on the similarity ``on``)."""
    on: Literal["decoder", "activation"] = "activation"
    """The similarity ``hungarian`` assigns on (ignored by the other methods)."""
    null_quantile: float = 0.99
    """A match is good when it beats this quantile of the null's best matches."""
    seed: int = 0
    """Seed of the null draws."""
    decoder_null: Literal["dictionary", "gaussian"] = "dictionary"
    """The decoder similarity's null (:func:`saelab.evolution.decoder_similarities`)."""

    def __post_init__(self) -> None:
        problems = []
        if self.decoder_null not in DECODER_NULLS:
            problems.append(f"unknown decoder_null {self.decoder_null!r} (valid: {list(DECODER_NULLS)})")
        if self.method not in METHODS:
            problems.append(f"unknown method {self.method!r} (valid: {list(METHODS)})")
        if self.on not in ("decoder", "activation"):
            problems.append(f"unknown similarity on={self.on!r} (valid: ['decoder', 'activation'])")
        if not 0.0 < self.null_quantile < 1.0:
            problems.append(f"null_quantile must be in (0, 1), got {self.null_quantile}")
        self.raise_problems(problems)

    @property
    def kind(self) -> Literal["decoder", "activation"]:
        """The similarity the matches are made on."""
        if self.method == "hungarian":
            return self.on
        return "decoder" if self.method == "decoder" else "activation"


@dataclass
class Lineages:
    """Features followed through a series of hooks (shallow to deep)."""

    hooks: tuple[str, ...]
    n_features: dict[str, int]
    """Features of each hook's SAE."""
    matches: dict[tuple[str, str], FeatureMatches]
    """The matches of each pair of consecutive hooks, both ways: ``(hook_a, hook_b)`` matches
    the features of hook_a among hook_b's (links and events come from it), and ``(hook_b,
    hook_a)`` looks back, from the same similarity transposed (its null too: the features
    looked up are the ones replaced or shuffled, which is as much a null as the other way)."""
    links: pd.DataFrame
    """``hook_a, feature_a, hook_b, feature_b, similarity, direction, event`` (event: persist,
    split, merge or split+merge)."""
    events: pd.DataFrame
    """One row per pair and event: ``pair, hook_a, hook_b, event, count, null_count, n_a, n_b``;
    ``null_count`` is the same count on the independent null draw."""
    lineage: pd.DataFrame
    """One row per (hook, feature): ``hook, feature, lineage`` (connected-component id)."""
    config: LineageConfig = field(default_factory=LineageConfig)

    def check_node(self, hook: str, feature: int) -> None:
        if hook not in self.n_features:
            raise ValueError(f"Unknown hook {hook!r}; the lineages were traced over {list(self.hooks)}")
        if not 0 <= int(feature) < self.n_features[hook]:
            raise ValueError(f"feature {feature} is out of range for {hook} ({self.n_features[hook]} features)")

    def lineage_id(self, hook: str, feature: int) -> int:
        """The connected component (row of :attr:`lineage`) that ``feature`` of ``hook`` belongs to."""
        self.check_node(hook, feature)
        offset = sum(self.n_features[h] for h in self.hooks[: self.hooks.index(hook)])
        return int(self.lineage["lineage"].to_numpy()[offset + int(feature)])

    def lineage_of(self, hook: str, feature: int) -> pd.DataFrame:
        """A feature's ancestors and descendants at every hook it reaches.

        Columns ``hook, feature, step`` (hooks away from ``hook``: negative = shallower),
        ``parent`` (the feature one step closer to the start that links to it; -1 for the
        start) and ``similarity`` of that link (NaN for the start). A feature reached by
        several links keeps its most similar one here; :meth:`lineage_links` has them all.
        """
        return self._trace(hook, feature)[0]

    def lineage_links(self, hook: str, feature: int) -> pd.DataFrame:
        """Every link on the paths of :meth:`lineage_of` (rows of :attr:`links`)."""
        return self._trace(hook, feature)[1]

    def _trace(self, hook: str, feature: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        self.check_node(hook, feature)
        start = self.hooks.index(hook)
        nodes = [pd.DataFrame({"hook": [hook], "feature": [int(feature)], "step": [0], "parent": [-1],
                               "similarity": [np.nan]})]  # fmt: skip
        found: list[pd.DataFrame] = []
        for direction in (1, -1):
            frontier = {int(feature)}
            j = start
            while frontier and 0 <= j + direction < len(self.hooks):
                here, there = self.hooks[j], self.hooks[j + direction]
                near, far = ("a", "b") if direction == 1 else ("b", "a")
                pair = self.links.loc[(self.links[f"hook_{near}"] == here) & (self.links[f"hook_{far}"] == there)]
                step = pair.loc[pair[f"feature_{near}"].isin(sorted(frontier))]
                found.append(step)
                best = step.sort_values("similarity", ascending=False).drop_duplicates(f"feature_{far}")
                nodes.append(pd.DataFrame({
                    "hook": there, "feature": best[f"feature_{far}"].to_numpy(), "step": j + direction - start,
                    "parent": best[f"feature_{near}"].to_numpy(), "similarity": best["similarity"].to_numpy(),
                }))  # fmt: skip
                frontier = set(best[f"feature_{far}"].tolist())
                j += direction
        table = pd.concat(nodes, ignore_index=True).sort_values(["step", "feature"], ignore_index=True)
        links = pd.concat(found, ignore_index=True) if found else self.links.iloc[:0]
        return table.loc[:, NODE_COLUMNS], links.sort_values(["hook_a", "feature_a", "feature_b"], ignore_index=True)

    def hooks_reached(self, hook: str, feature: int) -> tuple[str, ...]:
        """The hooks (in depth order) where the feature's lineage has at least one feature."""
        present = set(self.lineage_of(hook, feature)["hook"])
        return tuple(h for h in self.hooks if h in present)

    def summary(self) -> pd.DataFrame:
        """Per pair of hooks: the matched share of each side and the null rate, one row per pair."""
        rows = []
        for hook_a, hook_b in zip(self.hooks[:-1], self.hooks[1:], strict=True):
            forward, back = self.matches[(hook_a, hook_b)], self.matches[(hook_b, hook_a)]
            rows.append(
                {
                    "hook_a": hook_a,
                    "hook_b": hook_b,
                    "matched_share_a": forward.matched_share,
                    "null_rate_a": forward.null_rate,
                    "matched_share_b": back.matched_share,
                    "null_rate_b": back.null_rate,
                    "n_links": int((self.links["hook_a"].to_numpy() == hook_a).sum()),
                }
            )
        return pd.DataFrame(rows)


def trace_lineages(
    saes: Mapping[str, Any],
    *,
    method: str = "activation",
    on: Literal["decoder", "activation"] = "activation",
    samples: Mapping[str, PerTokenFeatures] | None = None,
    null_quantile: float = 0.99,
    seed: int = 0,
    decoder_null: Literal["dictionary", "gaussian"] = "dictionary",
    progress: bool = True,
) -> Lineages:
    """Match consecutive hooks of ``saes`` (hook -> SAE or ``[d_sae, d_in]`` decoder, shallow
    to deep) and chain the matches into lineages.

    ``samples``: for activation similarity, every hook's per-token features of the same texts
    (``saelab.cached_per_token(model, saes, texts)``); each pair's correlations are measured on
    those tokens. ``method``, ``on``, ``null_quantile``, ``seed`` and ``decoder_null`` make the
    :class:`LineageConfig`.
    """
    config = LineageConfig(method=method, on=on, null_quantile=null_quantile, seed=seed, decoder_null=decoder_null)
    hooks = tuple(saes)
    if len(hooks) < 2:
        raise ValueError(f"Lineages need at least 2 SAEs (hooks in depth order), got {len(hooks)}: {list(hooks)}")
    _check_widths(saes)
    _check_samples(saes, samples, config.kind)
    pairs = list(zip(hooks[:-1], hooks[1:], strict=True))
    all_matches: dict[tuple[str, str], FeatureMatches] = {}
    link_frames, event_rows = [], []
    for hook_a, hook_b in tqdm(pairs, desc="match hooks", unit="pair", disable=not progress, leave=False):
        sample = per_token_pairs(samples[hook_a], samples[hook_b]) if samples is not None else None
        sims = similarities(saes[hook_a], saes[hook_b], config.kind, sample=sample, seed=seed,
                            null=config.decoder_null)  # fmt: skip
        real, back, null = _matches(sims, config)
        del sims  # three [n_a, n_b] matrices; the next pair needs the memory
        links, rows = _links_and_events(hook_a, hook_b, real, null)
        all_matches[(hook_a, hook_b)], all_matches[(hook_b, hook_a)] = real, back
        link_frames.append(links)
        event_rows += rows
    n_features = {hooks[0]: len(all_matches[pairs[0]].best)}
    n_features |= {hook_b: len(all_matches[(hook_a, hook_b)].best_b) for hook_a, hook_b in pairs}
    links = pd.concat(link_frames, ignore_index=True)
    return Lineages(hooks=hooks, n_features=n_features, matches=all_matches, links=links,
                    events=pd.DataFrame(event_rows), lineage=_components(hooks, n_features, links),
                    config=config)  # fmt: skip


def _matches(sims: Similarities, config: LineageConfig) -> tuple[FeatureMatches, FeatureMatches, FeatureMatches]:
    """The matches, the matches looking back (the same similarity transposed, null included),
    and the matches of the independent null draw under the real matches' threshold.

    Only the first goes through :func:`matches_from`: the other two reuse its best matches
    or need only best matches, and each full pass over an ``[n_a, n_b]`` matrix is costly at
    thousands of features a side.
    """
    one_to_one = config.method == "hungarian"
    real = matches_from(sims, one_to_one=one_to_one, null_quantile=config.null_quantile, top=1)
    threshold_b = threshold_from_null(sims.null.T, config.null_quantile)
    back = FeatureMatches(
        method=real.method, on=real.on, threshold=threshold_b, null_quantile=config.null_quantile,
        best=_flagged(real.best_b, threshold_b), best_b=_flagged(real.best, threshold_b),
        pairs=_top1(real.best_b), null_rate=float((sims.null_check.max(axis=0) >= threshold_b).mean()),
        n_tokens=sims.n_tokens,
    )  # fmt: skip
    if one_to_one:
        as_null = Similarities(sims.kind, sims.null_check, sims.null, sims.null, sims.n_tokens)
        return real, back, matches_from(as_null, one_to_one=True, null_quantile=config.null_quantile, top=1)
    null = dataclasses.replace(
        real, best=best_matches(sims.null_check, real.threshold),
        best_b=best_matches(sims.null_check.T, real.threshold), pairs=real.pairs.iloc[:0],
    )  # fmt: skip
    return real, back, null


def _flagged(best: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The same best matches, flagged against another threshold (NaN similarity: unassigned)."""
    return best.assign(matched=good(best["similarity"].to_numpy(dtype=float), threshold))


def _top1(best: pd.DataFrame) -> pd.DataFrame:
    kept = best.loc[best["best_match"].to_numpy() >= 0]
    return pd.DataFrame({"feature_a": kept.index.to_numpy(), "feature_b": kept["best_match"].to_numpy(),
                         "similarity": kept["similarity"].to_numpy(), "rank": 1})  # fmt: skip


def _links_and_events(
    hook_a: str, hook_b: str, real: FeatureMatches, null: FeatureMatches
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    n_a, n_b = len(real.best), len(real.best_b)
    links = links_between(real)
    links.insert(0, "hook_a", hook_a)
    links.insert(2, "hook_b", hook_b)
    links["event"] = event_of_links(links, n_a, n_b)
    counts, null_counts = count_events(links, n_a, n_b), count_events(links_between(null), n_a, n_b)
    rows = [{"pair": f"{hook_a} → {hook_b}", "hook_a": hook_a, "hook_b": hook_b, "event": e, "count": counts[e],
             "null_count": null_counts[e], "n_a": n_a, "n_b": n_b} for e in EVENTS]  # fmt: skip
    return links, rows


def _components(hooks: tuple[str, ...], n_features: dict[str, int], links: pd.DataFrame) -> pd.DataFrame:
    offsets = dict(zip(hooks, np.cumsum([0] + [n_features[h] for h in hooks[:-1]]).tolist(), strict=True))
    forest = UnionFind(sum(n_features.values()))
    start_a = np.array([offsets[h] for h in links["hook_a"]], dtype=np.int64) + links["feature_a"].to_numpy()
    start_b = np.array([offsets[h] for h in links["hook_b"]], dtype=np.int64) + links["feature_b"].to_numpy()
    for x, y in zip(start_a.tolist(), start_b.tolist(), strict=True):
        forest.union(x, y)
    return pd.DataFrame({
        "hook": np.repeat(np.array(hooks, dtype=object), [n_features[h] for h in hooks]),
        "feature": np.concatenate([np.arange(n_features[h]) for h in hooks]),
        "lineage": forest.labels(),
    })  # fmt: skip


def _check_widths(saes: Mapping[str, Any]) -> None:
    widths = {hook: decoder_width(sae) for hook, sae in saes.items()}
    known = {h: w for h, w in widths.items() if w is not None}
    if len(set(known.values())) > 1:
        first = next(iter(known))
        other = next(h for h, w in known.items() if w != known[first])
        try:
            check_same_width(known[first], known[other])
        except ValueError as error:
            raise ValueError(f"{first} and {other}: {error}") from None


def _check_samples(saes: Mapping[str, Any], samples: Mapping[str, PerTokenFeatures] | None, kind: str) -> None:
    if kind == "decoder":
        if samples is not None:
            raise ValueError("samples are used by activation similarity only; pass method='activation' or no samples")
        return
    if samples is None:
        raise ValueError("Activation lineages need samples: {hook: per-token features of the same texts}, "
                         "e.g. saelab.cached_per_token(model, saes, texts)")  # fmt: skip
    missing = [h for h in saes if h not in samples]
    if missing:
        raise ValueError(f"samples has no per-token features for {missing}; it has {list(samples)}")
    for hook, sae in saes.items():
        found = samples[hook]
        if int(found.row_ptr.numel()) - 1 == 0:
            raise ValueError(f"The per-token features of {hook} hold no tokens; activation matching needs a sample")
        rows = getattr(getattr(sae, "W_dec", sae), "shape", (found.d_sae,))[0]
        if int(rows) != found.d_sae:
            raise ValueError(f"{hook}: the SAE has {rows} features but its per-token features have {found.d_sae}")
