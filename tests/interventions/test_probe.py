"""The concept probe: trained on another SAE's pooled features, tested on held-out texts."""

from __future__ import annotations

import pytest
import torch

from saelab import profiles
from saelab.extract.per_token import PerTokenFeatures
from saelab.interventions.probe import ConceptProbe, window_features
from tests.interventions._helpers import LABELS, TEXTS


def test_windows_average_consecutive_tokens_and_keep_their_text():
    dense = torch.arange(10, dtype=torch.float32).reshape(5, 2)  # one text, 5 tokens, 2 features
    per_token = PerTokenFeatures(
        tokens=[list("abcde")], token_ids=[[1, 2, 3, 4, 5]], d_sae=2,
        row_ptr=torch.arange(0, 11, 2), feature_idx=torch.tensor([0, 1] * 5), values=dense.flatten(),
        text_row_start=torch.tensor([0, 5]),
    )  # fmt: skip
    x, owner = window_features(per_token, 2)
    # spans [0,1], [2,3], [4] (a half window: kept, as 1 * 2 >= 2)
    torch.testing.assert_close(x, torch.tensor([[1.0, 2.0], [5.0, 6.0], [8.0, 9.0]]))
    assert owner.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="window"):
        window_features(per_token, 0)


def test_the_probe_separates_planted_categories_on_held_out_texts(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    profile = profiles.get("offline")
    sae = profile.load_sae(profile.hooks[0], device="cpu")  # real features: random ones barely separate these
    probe = ConceptProbe.train(model, sae, TEXTS, LABELS, window=6, test_fraction=0.34)
    assert probe.categories == ["python", "non_english"]
    assert probe.test_accuracy > probe.chance, (probe.test_accuracy, probe.chance)
    proba = probe.predict_proba(model, ["x = [i * 2 for i in items]", "Bonjour, comment allez-vous ?"])
    torch.testing.assert_close(proba.sum(-1), torch.ones(2))
    assert proba[0, 0] > proba[1, 0]
    assert probe.score(model, ["def f(): pass"], "python").shape == (1,)
    with pytest.raises(ValueError, match="knows"):
        probe.score(model, ["x"], "math")


def test_bad_training_data_is_refused(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 8, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="labels"):
        ConceptProbe.train(tiny_model, sae, TEXTS, LABELS[:3])
    with pytest.raises(ValueError, match="two categories"):
        ConceptProbe.train(tiny_model, sae, TEXTS[:3], ["python"] * 3)
