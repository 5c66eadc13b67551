"""Feature circuits: the top features of successive hooks, their error nodes and the metric, as
a graph whose edges say how much of the metric flows from one node through the next.

Following Marks et al. (2024, "Sparse Feature Circuits"), the edge from an upstream node ``u``
(at hook A) to a downstream node ``d`` (at the next hook B) is the linear estimate

    edge(u -> d) = (d metric / d d) * (d d / d u) * u,

with ``d metric / d d`` the total derivative through the model (as in grad x act) and
``d d / d u`` the derivative through the layers between A and B. Since ``x_B = decode(f_B) +
e_B``, the edges from ``u`` to *all* nodes at B add up to ``u``'s grad x act attribution; the
circuit keeps only the top nodes, so the kept edges add up to part of it. Nodes of the last
hook link to the metric with their grad x act attribution as the weight.

Nodes. Per hook, the ``top`` (position, feature) nodes by ``|attribution|`` and one error node
for the hook, summed over positions (BOS aside): its attribution is the sum of the per-position
error attributions, and its edges are sums over positions too. Cost: one forward (from hook A
on) and one backward pass per downstream node, batched ``batch_size`` rows at a time, plus
the attribution itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations
from saelab.interventions import _gradients as G
from saelab.interventions.attribution import (
    METHODS,
    Method,
    NodeGrads,
    attribute,
    grad_x_act_nodes,
    nodes_frame,
    top_by_abs,
)
from saelab.interventions.metrics import Metric

if TYPE_CHECKING:
    import networkx as nx

METRIC_NODE = "metric"
NODE_COLUMNS = ["node", "hook", "layer", "kind", "position", "token", "feature", "activation", "attribution"]


@dataclass(frozen=True)
class FeatureCircuit:
    """A feature circuit of one prompt: nodes per hook and the edges between successive hooks."""

    nodes: pd.DataFrame
    """One row per node. ``node`` (its id: ``"{hook}:{position}:{feature}"``, ``"{hook}:error"``
    or ``"metric"``), ``hook``, ``layer`` (the column of the graph: 0 for the first hook, one
    more per hook, the metric last), ``kind`` (``"feature"``, ``"error"`` or ``"metric"``),
    ``position`` and ``token`` (-1 and "" for the error and metric nodes, which span every
    position), ``feature`` (-1 unless a feature), ``activation`` (the feature's value; for
    an error node the norm of the error over all positions; for the metric node its value) and
    ``attribution`` (the node's attribution by ``method``; the metric's value for the metric node)."""
    edges: pd.DataFrame
    """One row per edge: ``source``, ``target`` (node ids) and ``weight``: positive means the
    source raises the metric through the target."""
    hooks: tuple[str, ...]
    metric: float
    method: str

    def to_networkx(self) -> nx.DiGraph:
        """The circuit as a ``networkx.DiGraph`` (node attributes from ``nodes``, edge attribute ``weight``)."""
        import networkx as nx

        graph = nx.DiGraph()
        for record in self.nodes.to_dict("records"):
            graph.add_node(record["node"], **record)
        for source, target, weight in self.edges[["source", "target", "weight"]].itertuples(index=False):
            graph.add_edge(source, target, weight=float(weight))
        return graph


def feature_circuit(
    model: HookedTransformer,
    saes: SAE | Mapping[str, SAE] | Sequence[SAE],
    tokens: Int[Tensor, "1 pos"] | str,
    metric: Metric,
    *,
    top: int = 10,
    method: Method = "grad_x_act",
    steps: int = 10,
    batch_size: int = 16,
) -> FeatureCircuit:
    """The feature circuit of ``metric`` on one prompt through ``saes`` (hooks in forward order).

    ``top`` feature nodes per hook are kept, chosen by ``|attribution|`` from ``method``
    (``steps`` for integrated gradients); edges are always the linear estimates of the module
    docstring. ``batch_size`` bounds the rows of one edge pass.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    by_hook = G.sae_dict(model, saes)
    tokens = G.as_tokens(model, tokens)
    if tokens.shape[0] != 1:
        raise ValueError(f"a feature circuit is built for one prompt (one row of tokens), got {tokens.shape[0]} rows")
    value, grads = grad_x_act_nodes(model, by_hook, tokens, metric)
    if method == "grad_x_act":
        frame = nodes_frame(model, tokens, grads)
    else:
        frame = attribute(model, by_hook, tokens, metric, method=method, steps=steps).frame
    nodes = _select_nodes(frame, list(by_hook), top, value)
    hooks = list(by_hook)
    clean = G.clean_activations(model, hooks, tokens)
    edges = []
    for upper, lower in zip(hooks, hooks[1:], strict=False):
        chosen = nodes.loc[nodes["hook"] == upper], nodes.loc[nodes["hook"] == lower]
        edges.append(_edges_between(model, by_hook, tokens, clean, grads, (upper, lower), chosen, batch_size))
    edges.append(_edges_to_metric(nodes.loc[nodes["hook"] == hooks[-1]], grads[hooks[-1]]))
    edge_frame = pd.concat(edges, ignore_index=True)
    return FeatureCircuit(nodes=nodes, edges=edge_frame, hooks=tuple(hooks), metric=value, method=method)


def _select_nodes(frame: pd.DataFrame, hooks: list[str], top: int, value: float) -> pd.DataFrame:
    parts = []
    for layer, hook in enumerate(hooks):
        at_hook = frame.loc[frame["hook"] == hook]
        feats = top_by_abs(at_hook.loc[at_hook["node"] == "feature"], "attribution", top)
        errors = at_hook.loc[at_hook["node"] == "error"]
        parts.append(
            pd.DataFrame(
                {
                    "node": [f"{hook}:{p}:{f}" for p, f in zip(feats["position"], feats["feature"], strict=True)],
                    "hook": hook,
                    "layer": layer,
                    "kind": "feature",
                    "position": feats["position"].to_numpy(),
                    "token": feats["token"].to_numpy(),
                    "feature": feats["feature"].to_numpy(),
                    "activation": feats["activation"].to_numpy(),
                    "attribution": feats["attribution"].to_numpy(),
                }
            )
        )
        norms, attributions = (errors.loc[:, c].to_numpy(dtype=float) for c in ("activation", "attribution"))
        error_norm = float(np.sqrt((norms**2).sum()))
        parts.append(_single(f"{hook}:error", hook, layer, "error", error_norm, float(attributions.sum())))
    parts.append(_single(METRIC_NODE, "", len(hooks), "metric", value, value))
    return pd.concat(parts, ignore_index=True).loc[:, NODE_COLUMNS]


def _single(node: str, hook: str, layer: int, kind: str, activation: float, attribution: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "node": [node],
            "hook": [hook],
            "layer": [layer],
            "kind": [kind],
            "position": [-1],
            "token": [""],
            "feature": [-1],
            "activation": [activation],
            "attribution": [attribution],
        }
    )


def _edges_to_metric(last: pd.DataFrame, grads: NodeGrads) -> pd.DataFrame:
    """Nodes of the last hook -> metric, weighted by their grad x act attribution."""
    weights = []
    for kind, position, feature in last[["kind", "position", "feature"]].itertuples(index=False):
        if kind == "error":
            weights.append(float((grads.error[0, 1:] * grads.error_grads[0, 1:]).sum()))
        else:
            weights.append(float(grads.feats[0, position, feature] * grads.feat_grads[0, position, feature]))
    return pd.DataFrame({"source": last["node"].to_numpy(), "target": METRIC_NODE, "weight": weights})


def _edges_between(
    model: HookedTransformer,
    saes: dict[str, SAE],
    tokens: Tensor,
    clean: dict[str, Tensor],
    grads: dict[str, NodeGrads],
    pair: tuple[str, str],
    chosen: tuple[pd.DataFrame, pd.DataFrame],
    batch_size: int,
) -> pd.DataFrame:
    """Edges from the chosen nodes of hook A to those of the next hook B: one batch row per
    downstream node, whose scalar ``(d metric / d d) * d`` is backpropagated to A's leaves."""
    upper, lower = pair
    ups, downs = chosen
    up_feats = ups[ups["kind"] == "feature"]
    q = torch.tensor(up_feats["position"].tolist(), dtype=torch.long)
    j = torch.tensor(up_feats["feature"].tolist(), dtype=torch.long)
    sources = [*up_feats["node"], f"{upper}:error"]
    rows: list[Tensor] = []
    down_list = list(downs[["kind", "position", "feature"]].itertuples(index=False))
    for begin in range(0, len(down_list), batch_size):
        part = down_list[begin : begin + batch_size]
        leaves, x_b = _run_between(model, saes, tokens, clean, pair, len(part))
        value = sum(_downstream_value(saes[lower], x_b[n], grads[lower], node) for n, node in enumerate(part))
        ((g_f, g_e),) = G.gradients(torch.as_tensor(value), [leaves])
        feats, error = leaves.feats.detach(), leaves.error.detach()
        to_feats = (g_f[:, q.to(g_f.device), j.to(g_f.device)] * feats[:, q, j]).cpu()  # [part, n_up]
        to_error = (g_e[:, 1:] * error[:, 1:]).sum(dim=(1, 2)).cpu()  # [part]
        rows.append(torch.cat([to_feats, to_error[:, None]], dim=1))
    weights = torch.cat(rows).float().numpy()  # [downstream, upstream]
    targets = downs["node"].to_numpy()
    return pd.DataFrame(
        {
            "source": np.tile(np.asarray(sources, dtype=object), len(targets)),
            "target": np.repeat(targets, len(sources)),
            "weight": weights.reshape(-1),
        }
    )


def _run_between(
    model: HookedTransformer,
    saes: dict[str, SAE],
    tokens: Tensor,
    clean: dict[str, Tensor],
    pair: tuple[str, str],
    n_rows: int,
) -> tuple[G.Leaves, Tensor]:
    """``n_rows`` copies of the prompt run from hook A's leaves (grad enabled) to hook B's activation."""
    upper, lower = pair
    store: dict[str, G.Leaves] = {}
    fwd = [(upper, G.leaf_hook(saes[upper], store, upper))]
    with torch.enable_grad():
        x_b = G.run_to(model, lower, tokens.expand(n_rows, -1), fwd, start=(upper, clean[upper].expand(n_rows, -1, -1)))
    return store[upper], x_b


def _downstream_value(sae: SAE, x_b: Tensor, grads: NodeGrads, node: tuple) -> Tensor:
    """``(d metric / d d) * d`` of one downstream node, as a function of one row of B's activation."""
    kind, position, feature = node
    with torch.enable_grad():
        feats = encode_activations(sae, x_b)  # [pos, d_sae]
        if kind == "feature":
            return grads.feat_grads[0, position, feature] * feats[position, feature]
        error = x_b - sae.decode(feats).to(device=x_b.device, dtype=x_b.dtype)
        return (grads.error_grads[0, 1:] * error[1:]).sum()
