"""Feature statistics: typical max over the strongest texts, mean per token, cached on disk."""

from __future__ import annotations

import torch

from saelab.extract.per_token import PerTokenFeatures
from saelab.interventions.feature_scale import FeatureStats, feature_stats, stats_from_per_token


def _planted() -> PerTokenFeatures:
    # 3 texts, 2 + 1 + 2 tokens, 3 features. Feature 0 peaks at 4, 1 and 2 in the three texts;
    # feature 1 fires once (value 6); feature 2 never fires.
    rows = [[(0, 4.0)], [(0, 1.0), (1, 6.0)], [(0, 1.0)], [(0, 2.0)], []]
    idx, vals, ptr = [], [], [0]
    for row in rows:
        idx += [f for f, _ in row]
        vals += [v for _, v in row]
        ptr.append(len(idx))
    return PerTokenFeatures(
        tokens=[["a", "b"], ["c"], ["d", "e"]], token_ids=[[1, 2], [3], [4, 5]], d_sae=3,
        row_ptr=torch.tensor(ptr), feature_idx=torch.tensor(idx), values=torch.tensor(vals),
        text_row_start=torch.tensor([0, 2, 3, 5]),
    )  # fmt: skip


def test_planted_statistics():
    stats = stats_from_per_token(_planted(), top_texts=2)
    # typical max: mean of the 2 largest per-text maxima (4, 2) -> 3; (6, 0) -> 3; never -> 0.
    torch.testing.assert_close(stats.typical_max, torch.tensor([3.0, 3.0, 0.0]))
    torch.testing.assert_close(stats.mean, torch.tensor([8.0 / 5, 6.0 / 5, 0.0]))
    torch.testing.assert_close(stats.frequency, torch.tensor([4 / 5, 1 / 5, 0.0]))
    assert (stats.n_texts, stats.n_tokens, stats.d_sae) == (3, 5, 3)
    again = FeatureStats.from_tensors(stats.to_tensors())
    torch.testing.assert_close(again.typical_max, stats.typical_max)
    assert again.n_tokens == 5


def test_feature_stats_are_measured_once_and_read_back(tiny_model, make_sae, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    sae = make_sae(tiny_model.cfg.d_model, 16, "blocks.2.hook_resid_pre", seed=3)
    texts = ["The cat sat on the mat.", "def f(x): return x"]
    first = feature_stats(tiny_model, sae, texts)
    files = list((tmp_path / "feature_stats").glob("*.safetensors"))
    assert len(files) == 1
    second = feature_stats(tiny_model, sae, texts)
    torch.testing.assert_close(first.typical_max, second.typical_max)
    assert first.n_texts == 2 and first.n_tokens > 5
    files[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    third = feature_stats(tiny_model, sae, texts)
    torch.testing.assert_close(third.mean, first.mean)
