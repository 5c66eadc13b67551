"""Figures of lineages through depth: the event counts beside their null, the specialists'
lineages as a Sankey, and one lineage's features highlighted on the same texts.

Precomputed data in (:class:`saelab.evolution.Lineages`, its ``events`` frame, per-token
features); ``go.Figure`` or HTML out. Nothing here runs the model or matches features.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab.viz.attribution import hook_label
from saelab.viz.highlight import HighlightedTexts, _HtmlView, highlight_feature
from saelab.viz.style import apply_layout, category_color, check_frame, check_numeric, unique_in_order

if TYPE_CHECKING:
    from saelab.evolution.lineages import Lineages
    from saelab.extract.per_token import PerTokenFeatures

EVENT_ORDER = ("persist", "split", "merge", "birth", "death")
REAL_COLOR = "#0072B2"
NULL_COLOR = "#AAAAAA"


def lineage_event_bars(
    events: pd.DataFrame, *, title: str = "Lineage events between layers, against the null"
) -> go.Figure:
    """Grouped bars of ``Lineages.events``: for each pair of layers and event, the count
    (blue) beside the same count on the independent null draw (grey)."""
    check_frame(events, ["pair", "event", "count", "null_count"], "events")
    check_numeric(events, ["count", "null_count"], "events")
    known = [e for e in EVENT_ORDER if e in set(events["event"])]
    order = {e: i for i, e in enumerate(known + [e for e in unique_in_order(events["event"]) if e not in known])}
    pairs = unique_in_order(events["pair"])
    frame = events.assign(_pair=[pairs.index(p) for p in events["pair"]], _event=[order[e] for e in events["event"]])
    frame = frame.sort_values(["_pair", "_event"], kind="stable")
    short = [_short_pair(str(p)) for p in frame["pair"]]
    x = [short, [str(e) for e in frame["event"]]]
    fig = go.Figure()
    for column, name, color in (("count", "measured", REAL_COLOR), ("null_count", "null", NULL_COLOR)):
        fig.add_trace(go.Bar(
            x=x, y=frame[column].astype(float), name=name, marker_color=color,
            texttemplate="%{y:.3~s}", textposition="outside", textfont=dict(size=11), cliponaxis=False,
            customdata=frame["pair"],
            hovertemplate="%{customdata}<br>%{x[1]}: %{y:,}<extra>" + name + "</extra>",
        ))  # fmt: skip
    apply_layout(
        fig, title, x="layer pair and event", y="count", barmode="group", uniformtext=dict(minsize=10, mode="show")
    )
    fig.update_layout(legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    fig.update_yaxes(range=[0, 1.15 * float(frame[["count", "null_count"]].to_numpy().max() or 1)])
    return fig


def _short_pair(pair: str) -> str:
    parts = [p.strip() for p in pair.split("→")]
    return " → ".join(hook_label(p) for p in parts) if len(parts) == 2 else pair


def lineage_sankey(
    lineages: Lineages,
    specialists: pd.DataFrame,
    *,
    title: str = "Lineages of the category specialists through depth",
) -> go.Figure:
    """A Sankey of the lineages (:meth:`Lineages.lineage_of`) of the features in
    ``specialists`` (rows with ``sae, category, feature``, e.g. ``specialist_lineages``):
    nodes are (hook, feature), labelled ``"L20 #123"``, one column per hook and coloured by
    the category of the specialist whose lineage they are in; link width and opacity grow
    with the similarity."""
    check_frame(specialists, ["sae", "category", "feature"], "specialists")
    nodes, links, alone = _sankey_data(lineages, specialists)
    note = "★ the specialist; width and opacity: similarity of the match"
    if alone:
        lines = [", ".join(alone[i : i + 4]) for i in range(0, len(alone), 4)]  # a long list would run off the figure
        note += "<br>no link at any layer (not drawn): " + ",<br>".join(lines)
    index = {(h, int(f)): i for i, (h, f) in enumerate(zip(nodes["hook"], nodes["feature"], strict=True))}
    x, y = _node_positions(nodes["_col"].to_numpy(), len(lineages.hooks))
    labels = [f"{hook_label(h)} #{int(f)}" + (" ★" if s else "")
              for h, f, s in zip(nodes["hook"], nodes["feature"], nodes["seed"], strict=True)]  # fmt: skip
    sims = links["similarity"].to_numpy(dtype=float)
    fig = go.Figure(go.Sankey(
        arrangement="fixed",
        node=dict(label=labels, x=x, y=y, pad=6, thickness=14, color=[category_color(c) for c in nodes["category"]],
                  customdata=nodes["category"], hovertemplate="%{label}<br>lineage of a %{customdata} specialist"
                  "<extra></extra>"),
        link=dict(
            source=[index[(h, int(f))] for h, f in zip(links["hook_a"], links["feature_a"], strict=True)],
            target=[index[(h, int(f))] for h, f in zip(links["hook_b"], links["feature_b"], strict=True)],
            value=np.clip(sims, 0.05, None), color=[_rgba(category_color(c), s) for c, s in
                                                    zip(links["category"], sims, strict=True)],
            customdata=sims, hovertemplate="%{source.label} → %{target.label}<br>similarity %{customdata:.2f}"
                                           "<extra></extra>",
        ),
    ))  # fmt: skip
    tallest = int(np.bincount(nodes["_col"].to_numpy(dtype=np.int64)).max()) if len(nodes) else 0
    fig = apply_layout(fig, f"{title}<br><sup>{note}</sup>", height=max(420, 22 * tallest + 180))
    return fig.update_layout(margin=dict(t=90 + 25 * ((len(alone) + 3) // 4)))


def _sankey_data(lineages: Lineages, specialists: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The nodes (one per (hook, feature), in column order) and links of the specialists'
    lineages, and the specialists with no link at all.

    Only linked nodes are kept: plotly does not draw a node without links, and then places
    the others wrongly when it is given positions for every node.
    """
    node_rows, link_frames, alone = [], [], []
    for sae, category, feature in zip(specialists["sae"], specialists["category"], specialists["feature"], strict=True):
        found = lineages.lineage_links(str(sae), int(feature))
        if found.empty:
            alone.append(f"{hook_label(str(sae))} #{int(feature)} ({category})")
            continue
        nodes = lineages.lineage_of(str(sae), int(feature))
        node_rows.append(nodes.assign(category=str(category), seed=nodes["step"] == 0))
        link_frames.append(found.assign(category=str(category)))
    if not link_frames:
        empty = pd.DataFrame(columns=["hook", "feature", "category", "seed", "_col"])
        return (
            empty,
            pd.DataFrame(columns=["hook_a", "feature_a", "hook_b", "feature_b", "similarity", "category"]),
            alone,
        )
    nodes = pd.concat(node_rows, ignore_index=True)
    # A node in several lineages takes the colour of the one it starts (the specialist itself), else the first.
    nodes = nodes.sort_values("seed", ascending=False, kind="stable").drop_duplicates(["hook", "feature"])
    links = pd.concat(link_frames, ignore_index=True).drop_duplicates(["hook_a", "feature_a", "hook_b", "feature_b"])
    column = {h: i for i, h in enumerate(lineages.hooks)}
    nodes = nodes.assign(_col=[column[h] for h in nodes["hook"]])
    return nodes.sort_values(["_col", "category", "feature"], ignore_index=True), links, alone


def _node_positions(columns: np.ndarray, n_columns: int) -> tuple[list[float], list[float]]:
    """One column per hook, nodes spread evenly down it (plotly wants both in (0, 1))."""
    x = [0.001 + 0.998 * c / max(n_columns - 1, 1) for c in columns.tolist()]
    y, seen = [], {c: 0 for c in set(columns.tolist())}
    totals = {c: int((columns == c).sum()) for c in seen}
    for c in columns.tolist():
        y.append(0.001 + 0.998 * (seen[c] + 0.5) / totals[c])
        seen[c] += 1
    return x, y


def _rgba(color: str, similarity: float) -> str:
    r, g, b = (int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{0.15 + 0.7 * float(np.clip(similarity, 0.0, 1.0)):.3f})"


@dataclass
class FeatureAcrossLayers(_HtmlView):
    """One highlighted block per (hook, feature) of a lineage, all on the same texts."""

    blocks: list[HighlightedTexts]
    title: str = ""

    def fragment(self) -> str:
        head = f'<div class="saelab-title">{html.escape(self.title)}</div>' if self.title else ""
        return head + "".join(block.fragment() for block in self.blocks)


def feature_across_layers(
    per_token: Mapping[str, PerTokenFeatures],
    features: Mapping[str, int | Sequence[int]] | pd.DataFrame,
    texts: Sequence[int],
    labels: Sequence[str] | None = None,
    *,
    similarity: Mapping[tuple[str, int], float] | None = None,
    per_hook: int | None = None,
    target: str | None = None,
    title: str = "",
) -> FeatureAcrossLayers:
    """A lineage's features, each highlighted (:func:`highlight_feature`) on the same
    ``texts`` (indices), one block per feature, hooks in ``features``' order.

    ``features``: hook -> feature id(s) at that hook, or a ``Lineages.lineage_of`` frame
    (``hook, feature`` and, if present, ``similarity``, ``step`` and ``parent``, the feature
    it was reached from, named in its title). ``similarity``: (hook, feature) ->
    the similarity of the match that reached it, shown in its block's title. ``per_hook``:
    show at most this many features of each hook, the most similar first (a lineage can fan
    out to dozens at depth); the block titles say how many were left out. Each block has
    its own colour scale: activations of different layers differ in size, and what is
    compared is where on the texts each feature fires.
    """
    parents: dict[tuple[str, int], str] = {}
    if isinstance(features, pd.DataFrame):
        features, similarity, parents = _from_frame(features, similarity)
    if not features:
        raise ValueError("features is empty; pass {hook: feature id(s)} of the lineage to show")
    if len(texts) == 0:
        raise ValueError("texts is empty; pass the indices of the texts to highlight")
    missing = [h for h in features if h not in per_token]
    if missing:
        raise ValueError(f"per_token has no features for {missing}; it has {list(per_token)}")
    if per_hook is not None and per_hook < 1:
        raise ValueError(f"per_hook must be a positive number of features, got {per_hook}")
    sims = similarity or {}
    blocks = []
    for hook, ids in features.items():
        ids = [int(ids)] if isinstance(ids, (int, np.integer)) else [int(f) for f in ids]
        shown = sorted(ids, key=lambda f: _descending(sims.get((hook, f))))[:per_hook] if per_hook else ids
        left_out = f"; {len(ids) - len(shown)} more at this layer not shown" if len(shown) < len(ids) else ""
        for feature in shown:
            value, parent = sims.get((hook, feature), float("nan")), parents.get((hook, feature))
            note = "" if value != value else f" (match similarity {value:.2f})"
            note = f" (linked to {parent}, similarity {value:.2f})" if parent and value == value else note
            blocks.append(highlight_feature(
                per_token[hook], feature, labels, texts=texts, target=target,
                title=f"{hook_label(hook)} ({hook}): feature #{feature}{note}{left_out}",
            ))  # fmt: skip
    return FeatureAcrossLayers(blocks=blocks, title=title)


def _descending(value: float | None) -> float:
    """Sort key: the most similar first; no similarity (None, or NaN for the start) last."""
    return float("inf") if value is None or value != value else -float(value)


def _from_frame(
    frame: pd.DataFrame, similarity: Mapping[tuple[str, int], float] | None
) -> tuple[dict[str, list[int]], Mapping[tuple[str, int], float] | None, dict[tuple[str, int], str]]:
    check_frame(frame, ["hook", "feature"], "features")
    hooks, ids = [str(h) for h in frame["hook"]], [int(f) for f in frame["feature"]]
    by_hook: dict[str, list[int]] = {h: [] for h in unique_in_order(hooks)}
    for hook, feature in zip(hooks, ids, strict=True):
        by_hook[hook].append(feature)
    if similarity is None and "similarity" in frame.columns:
        values = frame["similarity"].to_numpy(dtype=float).tolist()
        similarity = dict(zip(zip(hooks, ids, strict=True), values, strict=True))
    parents: dict[tuple[str, int], str] = {}
    if {"step", "parent"} <= set(frame.columns):
        steps = [int(s) for s in frame["step"]]
        hook_at = dict(zip(steps, hooks, strict=True))
        for hook, feature, step, parent in zip(hooks, ids, steps, frame["parent"], strict=True):
            toward_start = step - int(np.sign(step))
            if step != 0 and toward_start in hook_at:
                parents[(hook, feature)] = f"{hook_label(hook_at[toward_start])} #{int(parent)}"
    return by_hook, similarity, parents
