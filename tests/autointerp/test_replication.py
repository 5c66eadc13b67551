"""The decompositions of the Cunningham et al. comparison on planted data, the comparison's
table and ordering on a hand-made records frame with known means, and one small end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.decompositions import Decomposition, ica, neurons, pca, random_directions, sae_directions
from saelab.autointerp.replication import (
    ReplicationConfig,
    compare_decompositions,
    paper_ordering_holds,
    replication_table,
)
from saelab.autointerp.run import AutointerpConfig
from tests.autointerp.test_sources import HOOK, tiny_store
from tests.conftest import random_sae


def test_pca_is_orthonormal_and_sorted_by_variance():
    gen = torch.Generator().manual_seed(0)
    d, n = 12, 2000
    basis, _ = torch.linalg.qr(torch.randn(d, 3, generator=gen))  # [d, 3] orthonormal columns
    z = torch.randn(n, 3, generator=gen) * torch.tensor([5.0, 3.0, 1.0])
    sample = z @ basis.T + 0.01 * torch.randn(n, d, generator=gen) + 7.0
    dec = pca(sample)
    w = dec.weights
    assert w is not None and w.shape == (d, d) and not dec.sparse
    torch.testing.assert_close(w @ w.T, torch.eye(d), atol=1e-5, rtol=0)
    variances = dec.encode(sample).var(dim=0)
    assert (variances[:-1] >= variances[1:] - 1e-6).all()
    torch.testing.assert_close(variances[:3], torch.tensor([25.0, 9.0, 1.0]), rtol=0.1, atol=0)
    # The top three directions span the planted subspace, and the mean is removed.
    torch.testing.assert_close((w[:3] @ basis).abs().det().abs(), torch.tensor(1.0), atol=5e-3, rtol=0)
    assert dec.encode(sample).mean(dim=0).abs().max() < 1e-3
    assert pca(sample, n_components=2).n_features == 2


def test_ica_recovers_independent_laplace_sources():
    rng = np.random.default_rng(0)
    sources = rng.laplace(size=(4000, 3))
    mixing = rng.normal(size=(3, 3))
    sample = torch.from_numpy(sources @ mixing.T).float()
    dec = ica(sample, n_components=3)
    recovered = dec.encode(sample).numpy()
    corr = np.abs(np.corrcoef(recovered.T, sources.T)[:3, 3:])
    assert (corr.max(axis=1) > 0.9).all()
    assert sorted(corr.argmax(axis=1).tolist()) == [0, 1, 2]  # each source found once
    assert dec.write_directions().shape == (3, 3)


def test_fits_on_fewer_rows_than_dimensions_stay_bounded():
    # 40 rows (one repeated) in 64 dimensions: rank 38 once centred. Whitening past the rank
    # once divided by ~1e-14 and gave ICA components of norm ~1e14.
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(40, 64, generator=gen)
    sample[-1] = sample[0]
    held_out = torch.randn(200, 64, generator=gen)
    for dec in (ica(sample), pca(sample)):
        assert dec.n_features == 38
        assert dec.encode(held_out).abs().max() < 100


def test_neurons_random_and_sae_directions():
    x = torch.randn(5, 6)
    n = neurons(6)
    assert torch.equal(n.weights, torch.eye(6)) and torch.equal(n.encode(x), x) and n.n_features == 6
    r = random_directions(6, 4, seed=1)
    torch.testing.assert_close(r.weights.norm(dim=1), torch.ones(4))
    assert torch.equal(r.weights, random_directions(6, 4, seed=1).weights) and r.key != random_directions(6, 4).key
    sae = random_sae(6, 8, "blocks.0.hook_resid_pre")
    s = sae_directions(sae)
    assert s.sparse and s.n_features == 8 and torch.equal(s.write_directions(), sae.W_dec.detach())
    torch.testing.assert_close(s.encode(x), sae.encode(x).detach())
    with pytest.raises(ValueError, match="exactly one"):
        Decomposition("both", weights=torch.eye(2), sae=sae)


def planted_frame(means: dict[str, float], n: int = 40, spread: float = 0.01, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for dec, mean in means.items():
        for f in range(n):
            rows.append({"decomposition": dec, "explainer": "top_tokens", "feature": f,
                         "score_simulation": mean + spread * rng.standard_normal(),
                         "shuffled_simulation": 0.05 + spread * rng.standard_normal(),
                         "all_negative_simulation": 0.0})  # fmt: skip
        rows.append({"decomposition": dec, "explainer": "top_tokens", "feature": n, "score_simulation": np.nan,
                     "shuffled_simulation": np.nan, "all_negative_simulation": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_replication_table_and_paper_ordering():
    means = {"sae": 0.5, "ica": 0.3, "pca": 0.2, "neurons": 0.1}
    table = replication_table(planted_frame(means), n_boot=500)
    assert list(table["decomposition"]) == list(means)
    by = table.set_index("decomposition")
    for dec, mean in means.items():
        assert by.loc[dec, "mean"] == pytest.approx(mean, abs=0.01)
        assert by.loc[dec, "low"] < by.loc[dec, "mean"] < by.loc[dec, "high"]
        assert by.loc[dec, "margin"] == pytest.approx(mean - 0.05, abs=0.01)
        assert by.loc[dec, "n"] == 40 and by.loc[dec, "n_unscored"] == 1
    holds = paper_ordering_holds(table, "top_tokens", "simulation")
    assert holds.to_dict() == {
        "sae > ica": "yes, clearly",
        "ica > pca": "yes, clearly",
        "pca > neurons": "yes, clearly",
    }


def test_paper_ordering_reversed_and_overlapping():
    reversed_pair = replication_table(planted_frame({"sae": 0.5, "ica": 0.2, "pca": 0.3, "neurons": 0.1}), n_boot=500)
    assert paper_ordering_holds(reversed_pair, "top_tokens", "simulation")["ica > pca"] == "no"
    close = replication_table(planted_frame({"sae": 0.31, "ica": 0.3}, spread=0.2), n_boot=500)
    assert paper_ordering_holds(close, "top_tokens", "simulation").to_dict() == {"sae > ica": "yes, within the CIs"}


def test_replication_config_is_validated():
    with pytest.raises(ValueError, match="unknown decomposition 'nmf'"):
        ReplicationConfig(decompositions=("sae", "nmf"))
    with pytest.raises(ValueError, match="n_features must be at least 2"):
        ReplicationConfig(n_features=1)
    with pytest.raises(ValueError, match="fit_rows"):
        ReplicationConfig(fit_rows=10)


@pytest.mark.slow
def test_compare_decompositions_end_to_end(model, tmp_path_factory, tmp_path, monkeypatch):
    store = tiny_store(model, tmp_path_factory.getbasetemp() / "autointerp-store")
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "cache"))
    sae = random_sae(model.cfg.d_model, 32, HOOK, bias=0.0)
    cfg = ReplicationConfig(n_features=3, fit_rows=200, seed=0)
    examples_cfg = ExamplesConfig(window=8, n_explain=4, n_positives=4, n_negatives=4, n_hard_negatives=2,
                                  reservoir=16, calibration_chunks=2, dense_rate=0.05)  # fmt: skip
    out = tmp_path / "replication.jsonl"
    run_cfg = AutointerpConfig(scorers=("simulation",))
    frame = compare_decompositions(model, sae, store, out, config=cfg, autointerp=run_cfg,
                                   examples_config=examples_cfg, progress=False)  # fmt: skip
    keys = frame[["decomposition", "feature", "explainer"]]
    assert not keys.duplicated().any()
    assert sorted(set(frame["decomposition"])) == sorted(cfg.decompositions)
    assert frame.groupby(["decomposition", "explainer"]).size().eq(3).all()
    assert len(frame) == len(cfg.decompositions) * 3 * 2
    assert frame["score_simulation"].notna().any()
    table = replication_table(frame, n_boot=200)
    assert set(table["decomposition"]) == set(cfg.decompositions)
