"""Attribution against ground truth: each method's top nodes beside the effect of actually
zero-ablating them, prompt by prompt, and the correlations that summarise it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from sae_lens import SAE
from scipy import stats
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract.tokens import tokenize
from saelab.interventions.attribution import ablation_effects, attribute
from saelab.interventions.metrics import Metric

METHOD_NAMES = ("grad_x_act", "integrated_gradients")


def prompts_with_next_token(model: HookedTransformer, texts: Sequence[str], n_tokens: int) -> Int[Tensor, "n pos"]:
    """The texts with more than ``n_tokens`` tokens, cut to ``n_tokens`` (BOS included) plus the
    text's actual next token: ``next_token_logprob(-2)`` then reads a real prediction."""
    rows = [ids[: n_tokens + 1] for ids in tokenize(model, list(texts)).ids if len(ids) > n_tokens]
    if not rows:
        raise ValueError(f"no text has more than {n_tokens} tokens")
    return torch.tensor(rows)


def attribution_vs_ablation(
    model: HookedTransformer,
    sae: SAE,
    prompts: Int[Tensor, "n pos"],
    metric_for: Callable[[Tensor], Metric],
    *,
    top: int = 50,
    steps: int = 10,
    progress: bool = True,
) -> pd.DataFrame:
    """Per prompt, the union of grad x act's and integrated gradients' ``top`` (position,
    feature) nodes by |attribution|, each with both attributions and its true ablation effect
    (``metric(clean) - metric(node zeroed)``, through the error-preserving splice).

    ``metric_for`` builds each prompt's metric from its ``[1, pos]`` tokens (``lambda row: m``
    for one metric everywhere).
    Columns: ``prompt, position, feature, grad_x_act, integrated_gradients, ablation,
    top_grad_x_act, top_integrated_gradients``.
    """
    frames = []
    for i in tqdm(range(prompts.shape[0]), desc="attribution vs ablation", disable=not progress):
        row = prompts[i : i + 1]
        m = metric_for(row)
        results = {
            "grad_x_act": attribute(model, sae, row, m).features(),
            "integrated_gradients": attribute(
                model, sae, row, m, method="integrated_gradients", steps=steps
            ).features(),
        }
        keys = ["position", "feature"]
        merged = results["grad_x_act"].loc[:, [*keys, "attribution"]].rename(columns={"attribution": "grad_x_act"})
        ig = results["integrated_gradients"].loc[:, [*keys, "attribution"]]
        merged = merged.merge(ig.rename(columns={"attribution": "integrated_gradients"}), on=keys)
        for method in METHOD_NAMES:
            rank = np.argsort(-np.abs(merged[method].to_numpy(float)), kind="stable")[:top]
            merged[f"top_{method}"] = np.isin(np.arange(len(merged)), rank)
        chosen = merged.loc[merged["top_grad_x_act"] | merged["top_integrated_gradients"]].reset_index(drop=True)
        chosen.insert(0, "prompt", i)
        chosen["ablation"] = ablation_effects(model, sae, row, m, chosen.loc[:, keys])
        frames.append(chosen)
    return pd.concat(frames, ignore_index=True)


def attribution_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method, over its own top nodes: pooled Pearson and Spearman with the true effect,
    the median per-prompt Pearson, the share of signs right, and the nodes counted."""
    rows = []
    for method in METHOD_NAMES:
        part = frame.loc[frame[f"top_{method}"]]
        x, y = part[method].to_numpy(float), part["ablation"].to_numpy(float)
        per_prompt = [np.corrcoef(p[method], p["ablation"])[0, 1] for _, p in part.groupby("prompt") if len(p) > 2]
        rows.append({
            "method": method, "nodes": len(part), "pearson": float(np.corrcoef(x, y)[0, 1]),
            "median_prompt_pearson": float(np.nanmedian(per_prompt)) if per_prompt else float("nan"),
            "spearman": float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1]),
            "sign_right": float(np.mean(np.sign(x) == np.sign(y))),
        })  # fmt: skip
    return pd.DataFrame(rows)
