"""Time per feature of ``saelab.interventions.feature_effects`` against the naive loop, side by side.

Setup: the bundled SAE at ``blocks.20.hook_resid_pre`` of smollm2-135m; ``--texts`` texts of the
labelled dataset (a seeded sample spread over its categories) truncated to ``--max-tokens``
tokens, BOS included; the ``--features`` features active on them that fire on the most
positions (most frequent first; ties by id). Zero-ablation, every position but BOS.

- ours: one ``feature_effects`` call over all features and texts (runs the model to the hook
  once per text batch, skips the pairs where a feature never fires, resumes edited rows from
  the hook, unembeds only from the first edited position);
- naive: for each feature, one full forward pass of all the texts (batched, padded) with the
  splice hook installed (``saelab.interventions.spliced``), no skipping; the clean pass is run
  once. A full naive loop over every feature would take hours on a CPU, so it runs on a
  seeded random subset of ``--naive-features`` features and the time per feature is
  extrapolated; half the subset is timed before ours and half after, so a drift in the
  machine's speed shows up as two different naive numbers.
- naive per text (``--per-text-features``): the same, one forward per (feature, text): the
  literal "one forward per feature per text" loop, on fewer features.

The loss deltas of ours and the naive loop are compared on the features both ran.

    python bench/effects.py [--features 1000] [--texts 20] [--max-tokens 32] [--naive-features 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import saelab
from saelab.extract.batches import pad_rows
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import TextTooLongWarning, tokenize
from saelab.interventions.ablation import edit_mask, prediction_mask
from saelab.interventions.edits import set_features
from saelab.interventions.effects import feature_effects
from saelab.interventions.splice import spliced

HOOK = "blocks.20.hook_resid_pre"


def sample_texts(n: int, seed: int) -> list[str]:
    frame = saelab.load_dataset()
    rng = np.random.default_rng(seed)
    return [str(frame["text"].iloc[i]) for i in sorted(rng.choice(len(frame), n, replace=False))]


def token_batch(model, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextTooLongWarning)
        tokenized = tokenize(model, texts, max_length=max_tokens)
    width = max(len(ids) for ids in tokenized.ids)
    batch = pad_rows(tokenized, range(len(texts)), width, "right", True, int(model.tokenizer.pad_token_id or 0))
    return batch.tokens, batch.attention_mask


def most_frequent_features(model, sae, tokens, mask, n: int) -> tuple[list[int], int]:
    with torch.inference_mode():
        feats = encode_activations(sae, run_hooks(model, [HOOK], tokens, mask)[HOOK])
    counts = (feats * edit_mask(mask)[..., None]).ne(0).sum(dim=(0, 1))
    order = torch.argsort(-counts * sae.cfg.d_sae + torch.arange(sae.cfg.d_sae))  # by count, then id
    active = int((counts > 0).sum())
    return [int(f) for f in order[: min(n, active)]], active


def nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return -F.log_softmax(logits.float(), dim=-1)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def naive(model, sae, features: list[int], tokens, mask, per_text: bool) -> tuple[float, dict[int, torch.Tensor]]:
    """Seconds and loss deltas of full forward passes with the splice hook, one per feature
    (one per feature and text with ``per_text``); the clean pass included in the time."""
    edit = edit_mask(mask)
    start = time.perf_counter()
    with torch.inference_mode():
        clean = nll(model(tokens, attention_mask=mask), tokens)
        out = {}
        for feature in features:
            with spliced(model, sae, set_features([feature], [0.0])) as splice:
                if per_text:
                    rows = [splice.run(tokens[i : i + 1], edit_mask=edit[i : i + 1], attention_mask=mask[i : i + 1])
                            for i in range(len(tokens))]  # fmt: skip
                    logits = torch.cat(rows)
                else:
                    logits = splice.run(tokens, edit_mask=edit, attention_mask=mask)
            out[feature] = nll(logits, tokens) - clean
    return time.perf_counter() - start, out


def max_difference(effects, reference: dict[int, torch.Tensor], predict: torch.Tensor) -> float:
    worst = 0.0
    for feature, delta in reference.items():
        ours = effects.loss_delta[effects.features.index(feature)]
        worst = max(worst, float((ours[predict] - delta[predict]).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--naive-features", type=int, default=20)
    parser.add_argument("--per-text-features", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = saelab.load_model("smollm2-135m")
    sae = saelab.profiles.get("offline").load_sae(HOOK, device=model.cfg.device)
    tokens, mask = token_batch(model, sample_texts(args.texts, args.seed), args.max_tokens)
    features, n_active = most_frequent_features(model, sae, tokens, mask, args.features)
    n = len(features)
    rng = np.random.default_rng(args.seed)
    subset = [features[i] for i in sorted(rng.choice(n, min(args.naive_features, n), replace=False))]
    per_text = subset[: args.per_text_features]
    print(
        f"device={model.cfg.device} threads={torch.get_num_threads()} hook={HOOK} d_sae={sae.cfg.d_sae} "
        f"texts={len(tokens)} tokens={int(mask.sum())} (<= {args.max_tokens} per text, BOS included)"
    )
    print(
        f"features: the {n} most frequent of the {n_active} active on these texts; naive loop on a random "
        f"{len(subset)} of them (per-text variant on {len(per_text)}), extrapolated per feature"
    )

    half = len(subset) // 2
    t_before, ref = naive(model, sae, subset[:half], tokens, mask, per_text=False)
    start = time.perf_counter()
    effects = feature_effects(model, sae, features, tokens, attention_mask=mask, batch_size=args.batch_size)
    t_ours = time.perf_counter() - start
    t_after, ref_after = naive(model, sae, subset[half:], tokens, mask, per_text=False)
    ref.update(ref_after)
    t_text, ref_text = naive(model, sae, per_text, tokens, mask, per_text=True) if per_text else (0.0, {})

    ours_pf = t_ours / n
    naive_pf = (t_before + t_after) / len(subset)
    ran = int(effects.ran.sum())
    print(
        f"ours:  {t_ours:8.1f} s for {n} features = {ours_pf * 1e3:8.1f} ms/feature "
        f"({ran} of {effects.ran.numel()} (feature, text) pairs run, {effects.ran.numel() - ran} skipped: feature "
        f"never fires there)"
    )
    print(
        f"naive: {naive_pf * 1e3:8.1f} ms/feature ({half} features before ours: "
        f"{t_before / max(1, half) * 1e3:.1f} ms/feature; {len(subset) - half} after: "
        f"{t_after / max(1, len(subset) - half) * 1e3:.1f} ms/feature); extrapolated to {n} features: "
        f"{naive_pf * n:.0f} s"
    )
    print(f"ratio naive / ours: {naive_pf / ours_pf:.1f}x")
    if per_text:
        text_pf = t_text / len(per_text)
        print(
            f"naive, one forward per feature per text: {text_pf * 1e3:8.1f} ms/feature "
            f"(ratio to ours {text_pf / ours_pf:.1f}x)"
        )
    predict = prediction_mask(mask)
    print(
        f"max |ours - naive| loss delta over {len(ref)} features x {int(predict.sum())} predictions: "
        f"{max_difference(effects, ref, predict):.2e} (per-text naive: "
        f"{max_difference(effects, ref_text, predict) if ref_text else float('nan'):.2e})"
    )


if __name__ == "__main__":
    main()
