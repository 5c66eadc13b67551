"""build_dashboards against brute force on the tiny model: every token of the source encoded
at once, then counted, ranked and binned by hand. The streamed pass, its observers and the
data-free parts must give the same numbers; a pass interrupted mid-way resumes to the same
dashboard; bad input gets a clear error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from saelab.analysis.feature import unembedding_directions
from saelab.autointerp.sources import Chunk, StoreSource, TextSource
from saelab.dashboards.build import build_dashboards
from saelab.dashboards.config import DashboardConfig
from saelab.extract.hooks import encode_activations
from tests.conftest import random_sae

HOOK = "blocks.2.hook_resid_pre"
D_SAE = 24
CFG = DashboardConfig(n_top=4, n_quantile_groups=3, per_group=2, reservoir=12, window=8, n_histogram_bins=10,
                      n_logits=5, n_neighbours=3, n_logit_histogram_bins=8, steering_top=3)  # fmt: skip
TEXTS = [f"Item {i}: the {['cat', 'river', 'piano', 'city'][i % 4]} was {['red', 'loud', 'old'][i % 3]} "
         f"on day {i} of {i * 7 % 13} and nobody said why." for i in range(30)]  # fmt: skip


@dataclass
class Truth:
    acts_TF: torch.Tensor
    """Every valid token's features, in source order."""
    inputs_TD: torch.Tensor
    windows: list[tuple[int, int, torch.Tensor]]
    """(sequence, start, per-token features [n, F]) of every window with a valid token."""


def brute_force(source: TextSource, sae, window: int) -> Truth:
    acts, inputs, windows = [], [], []
    for index in range(source.n_chunks):
        chunk: Chunk = source.chunk(index)
        with torch.no_grad():
            encoded = encode_activations(sae, chunk.acts[chunk.valid]).float()
        acts.append(encoded)
        inputs.append(chunk.acts[chunk.valid])
        full = torch.zeros((*chunk.valid.shape, encoded.shape[1]))
        full[chunk.valid] = encoded
        for row, seq in enumerate(chunk.seq.tolist()):
            for start in range(0, chunk.valid.shape[1], window):
                mask = chunk.valid[row, start : start + window]
                if mask.any():
                    windows.append((seq, start, full[row, start : start + window][mask]))
    return Truth(torch.cat(acts), torch.cat(inputs), windows)


@pytest.fixture(scope="module")
def built(tiny_model, tmp_path_factory):
    sae = random_sae(tiny_model.cfg.d_model, D_SAE, HOOK, bias=-0.5, input_norm=60.0)
    source = TextSource(tiny_model, TEXTS, HOOK, batch_size=4)  # 8 chunks
    dash = build_dashboards(tiny_model, sae, source, config=CFG, feature_map=False, cache=False, progress=False)
    return sae, source, dash, brute_force(source, sae, CFG.window)


def test_counts_densities_and_maxima(built):
    _, source, dash, truth = built
    fires = truth.acts_TF > 0
    assert dash.info.n_tokens == source.n_tokens == len(truth.acts_TF)
    assert any(f.fires for f in dash.features.values()) and len(dash) == D_SAE
    for f, feat in dash.features.items():
        col = truth.acts_TF[:, f]
        assert feat.n_fired == int(fires[:, f].sum())
        assert feat.density == pytest.approx(feat.n_fired / len(col))
        assert feat.max_activation == pytest.approx(float(col.max()), abs=1e-4)
        if feat.fires:
            assert feat.mean_activation == pytest.approx(float(col[col > 0].mean()), rel=1e-4)
            assert sum(feat.histogram.counts) == feat.n_fired
            assert feat.histogram.edges[-1] == pytest.approx(feat.max_activation)
    assert dash.summary["l0"] == pytest.approx(float(fires.sum(dim=1).float().mean()))
    assert dash.summary["dead_fraction"] == pytest.approx(float((~fires.any(dim=0)).float().mean()))


def test_top_windows_are_the_strongest(built):
    _, _, dash, truth = built
    for f, feat in dash.features.items():
        peaks = sorted((float(w[:, f].max()) for _, _, w in truth.windows if w[:, f].max() > 0), reverse=True)
        shown = [c.max_act for c in feat.top]
        np.testing.assert_allclose(shown, peaks[: CFG.n_top], rtol=1e-3, atol=1e-3)  # fp16 storage
        if feat.top:
            assert feat.steering_unit == pytest.approx(float(np.mean(peaks[: CFG.steering_top])), rel=1e-4)


def test_quantile_groups_spread_and_do_not_repeat_the_top(built):
    _, _, dash, _ = built
    grouped = [f for f in dash.features.values() if len(f.quantiles) > 1]
    assert grouped
    for feat in grouped:
        top = {c.source for c in feat.top}
        lows = [q.low for q in feat.quantiles]
        assert lows == sorted(lows, reverse=True)
        assert sum(q.share for q in feat.quantiles) == pytest.approx(1.0, abs=1e-3)
        for q in feat.quantiles:
            assert q.low <= q.high and len(q.examples) <= CFG.per_group
            # Window peaks are float32; the shown tokens' activations are stored as float16.
            assert all(q.low * (1 - 2e-3) <= c.max_act <= q.high * (1 + 2e-3) for c in q.examples)
            assert top.isdisjoint(c.source for c in q.examples)


def test_coactivation_is_jaccard_of_firing_tokens(built):
    _, _, dash, truth = built
    fires = (truth.acts_TF > 0).float()
    both = fires.T @ fires
    count = fires.sum(dim=0)
    for f, feat in dash.features.items():
        if not feat.fires:
            assert feat.coactivating == ()
            continue
        jaccard = both[f] / (count[f] + count - both[f])
        jaccard[f] = -1
        for n in feat.coactivating:
            assert n.value == pytest.approx(float(jaccard[n.feature]), abs=1e-5)
            assert n.share == pytest.approx(float(both[f, n.feature] / count[f]), abs=1e-5)
        best = float(jaccard.max())
        assert feat.coactivating[0].value == pytest.approx(best, abs=1e-5) or best == 0


def test_explained_variance_matches_a_direct_computation(built):
    sae, _, dash, truth = built
    with torch.no_grad():
        recon = sae.decode(truth.acts_TF)
    x = truth.inputs_TD.double()
    expected = 1 - float(((recon.double() - x) ** 2).sum()) / float(((x - x.mean(dim=0)) ** 2).sum())
    assert dash.summary["explained_variance"] == pytest.approx(expected, rel=1e-5)


def test_data_free_parts(built, tiny_model):
    sae, _, dash, _ = built
    logits = unembedding_directions(tiny_model, sae, torch.arange(D_SAE)) @ tiny_model.W_U.detach()
    unit = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    for f, feat in dash.features.items():
        assert [t.token_id for t in feat.promoted] == logits[f].topk(CFG.n_logits).indices.tolist()
        assert [t.token_id for t in feat.suppressed] == (-logits[f]).topk(CFG.n_logits).indices.tolist()
        assert sum(feat.logit_histogram.counts) == tiny_model.cfg.d_vocab
        cos[f, f] = -2
        assert [n.feature for n in feat.decoder_neighbours] == cos[f].topk(CFG.n_neighbours).indices.tolist()


def test_no_joins_leave_empty_fields(built):
    dash = built[2]
    for feat in dash.features.values():
        assert feat.explanations == () and feat.specialist == () and feat.matches == () and feat.map_xy is None
    assert dash.summary["specialists"] == [] and dash.summary["explanation_scores"] == []
    assert dash.summary["ce_loss_recovered"] is None


class FailingSource:
    """A real source that can be told to fail at one chunk (an interrupted pass)."""

    def __init__(self, inner: TextSource, fail_at: int | None = None) -> None:
        self.inner, self.fail_at = inner, fail_at
        self.key, self.n_chunks, self.n_tokens, self.hook = inner.key, inner.n_chunks, inner.n_tokens, inner.hook

    def chunk(self, index: int) -> Chunk:
        if index == self.fail_at:
            raise KeyboardInterrupt
        return self.inner.chunk(index)

    def token_ids(self, seq: int) -> list[int]:
        return self.inner.token_ids(seq)


def test_an_interrupted_build_resumes_to_the_same_dashboard(built, tiny_model, tmp_path, monkeypatch):
    sae, source, whole, _ = built
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    cfg = DashboardConfig(**CFG.to_dict())
    with pytest.raises(KeyboardInterrupt):
        build_dashboards(tiny_model, sae, FailingSource(source, fail_at=3), config=cfg, feature_map=False,
                         progress=False)  # fmt: skip
    assert list(tmp_path.rglob("*.partial.pt"))
    resumed = build_dashboards(tiny_model, sae, FailingSource(source), config=cfg, feature_map=False, progress=False)
    assert _content(resumed) == _content(whole)
    again = build_dashboards(tiny_model, sae, FailingSource(source, fail_at=0), config=cfg, feature_map=False,
                             progress=False)  # fmt: skip
    assert _content(again) == _content(whole)  # from the cache: no chunk read


def _content(dash) -> dict:
    """Everything but the description of the source (which names the wrapper class)."""
    out = dash.to_dict()
    out["info"].pop("source")
    return out


def test_bad_input_is_named(tiny_model, built):
    sae = built[0]
    with pytest.raises(ValueError, match=r"out of range.*24 features"):
        build_dashboards(tiny_model, sae, TEXTS[:2], features=[3, 24], cache=False, progress=False)
    with pytest.raises(ValueError, match="reads 'blocks.3.hook_resid_pre' but the SAE reads"):
        build_dashboards(tiny_model, sae, TextSource(tiny_model, TEXTS[:2], "blocks.3.hook_resid_pre"), cache=False,
                         progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="not one string"):
        build_dashboards(tiny_model, sae, "one text", cache=False, progress=False)
    with pytest.raises(TypeError, match="DashboardConfig"):
        build_dashboards(tiny_model, sae, TEXTS[:2], config={"n_top": 3}, cache=False, progress=False)  # type: ignore[arg-type]


def test_a_store_of_another_hook_or_model_is_refused(tiny_model, built, tmp_path, monkeypatch):
    from saelab.store.build import build_store
    from saelab.store.config import StoreConfig

    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    sae = built[0]
    cfg = StoreConfig(model_name=tiny_model.cfg.model_name, hooks=(HOOK, "blocks.3.hook_resid_pre"), seq_len=32,
                      n_tokens=600, held_out_fraction=0.2, cache_root=str(tmp_path / "stores"))  # fmt: skip
    store = build_store(tiny_model, TEXTS, cfg, progress=False)
    with pytest.raises(ValueError, match="reads 'blocks.3.hook_resid_pre' but the SAE reads"):
        build_dashboards(tiny_model, sae, StoreSource(store, "blocks.3.hook_resid_pre"), cache=False, progress=False)
    store.manifest["model"]["identity"] = "another-model"
    with pytest.raises(ValueError, match="built from another model"):
        build_dashboards(tiny_model, sae, StoreSource(store, HOOK), cache=False, progress=False)


def test_joins_land_on_their_features(built, tiny_model):
    import pandas as pd

    sae, source, _, _ = built
    records = pd.DataFrame([
        {"feature": 2, "decomposition": "sae", "explainer": "top_tokens", "explanation": "cats", "skipped": None,
         "score_simulation": 0.5, "shuffled_simulation": 0.1, "all_negative_simulation": 0.0},
        {"feature": 5, "decomposition": "sae", "explainer": "top_tokens", "explanation": "", "skipped": "never fires",
         "score_simulation": float("nan"), "shuffled_simulation": float("nan"), "all_negative_simulation": 0.0},
        {"feature": 2, "decomposition": "pca", "explainer": "top_tokens", "explanation": "not this SAE's",
         "skipped": None, "score_simulation": 0.9, "shuffled_simulation": 0.0, "all_negative_simulation": 0.0},
    ])  # fmt: skip
    table = pd.DataFrame([{"category": "code", "feature": 2, "auroc": 0.91, "q_value": 0.01, "is_specialist": True},
                          {"category": "math", "feature": 2, "auroc": 0.7, "q_value": 0.3, "is_specialist": False}])
    other = random_sae(tiny_model.cfg.d_model, 16, "blocks.4.hook_resid_pre", seed=3)
    dash = build_dashboards(tiny_model, sae, source, features=[2, 5], config=CFG, explanations=records,
                            specialists=table, other_saes={"blocks.4.hook_resid_pre": other}, feature_map=False,
                            cache=False, progress=False)  # fmt: skip
    two, five = dash[2], dash[5]
    assert [(e.explainer, e.text, e.scores, e.shuffled) for e in two.explanations] == [
        ("top_tokens", "cats", {"simulation": 0.5}, {"simulation": 0.1})]
    assert five.explanations == ()  # skipped: nothing to show, and nothing made up
    assert [(s.category, s.is_specialist) for s in two.specialist] == [("code", True), ("math", False)]
    assert five.specialist == ()
    assert [m.hook for m in two.matches] == ["blocks.4.hook_resid_pre"] and 0 <= two.matches[0].feature < 16
    assert dash.summary["specialists"] == [{"category": "code", "feature": 2, "auroc": 0.91, "q_value": 0.01,
                                            "is_specialist": True}]  # fmt: skip
    assert dash.frame().set_index("feature").loc[2, "category"] == "code"
    with pytest.raises(ValueError, match=r"outside \[0, 24\).*another SAE"):
        build_dashboards(tiny_model, sae, source, features=[2], config=CFG, specialists=table.assign(feature=99),
                         feature_map=False, cache=False, progress=False)  # fmt: skip
