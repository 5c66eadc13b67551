"""A sweep's members evaluated together on held-out tokens of the tiny model: one row per
member, the numbers the harness gives each SAE alone, and the frontier tools read the frame."""

from __future__ import annotations

import pytest
import torch

from saelab import evals
from saelab.evals.pareto import winners
from saelab.train import RunConfig, config_for, fit_sweep
from saelab.train.export import to_sae_lens
from saelab.train.sweep_eval import evaluate_sweep
from tests._synthetic import synthetic_source
from tests.evals._helpers import HOOK, N_POS, TEXTS


class _HeldOut:
    """The one method evaluate_sweep reads from an ActivationStore."""

    def __init__(self, tokens: torch.Tensor):
        self._tokens = tokens

    def tokens(self, split: str = "all") -> torch.Tensor:
        assert split == "held_out"
        return self._tokens


def test_members_are_evaluated_as_each_alone(tiny_model) -> None:
    d = tiny_model.cfg.d_model
    base = dict(d_in=d, d_sae=32, batch_size=64, total_steps=20, lr_warmup_steps=0, lr_decay_steps=0, device="cpu",
                hook_name=HOOK, model_name=tiny_model.cfg.model_name)  # fmt: skip
    configs = [config_for("topk", k=4, **base), config_for("topk", k=8, **base), config_for("relu", **base)]
    sweep = fit_sweep(configs, synthetic_source(d, 64, seed=1), RunConfig(progress=False))
    tokens = tiny_model.to_tokens(TEXTS)[:, :N_POS]
    frame = evaluate_sweep(tiny_model, sweep, _HeldOut(tokens), progress=False)
    assert list(frame["member"]) == list(sweep.members) and list(frame["activation"]) == ["topk", "topk", "relu"]
    assert frame.loc[0, "k"] == 4 and frame["l1_coefficient"].isna().tolist() == [True, True, False]
    for row, result in zip(frame.itertuples(), sweep.results, strict=True):
        alone = evals.evaluate_sae(tiny_model, to_sae_lens(result.sae), tokens, progress=False)
        assert row.l0 == pytest.approx(alone.l0) and row.ce_loss_recovered == pytest.approx(alone.ce_loss_recovered)
    assert set(winners(frame)["winner"]) <= {"topk", "relu"}
    with pytest.raises(ValueError, match="no member"):
        evaluate_sweep(tiny_model, {}, _HeldOut(tokens))
