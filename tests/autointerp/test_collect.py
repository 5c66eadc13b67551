"""The examples pass on planted features with known answers: an SAE at
``blocks.0.hook_resid_pre`` (there the residual is the token embedding itself) whose feature
fires on exactly one token id, a dense direction with a planted negative tail, and a pass
interrupted mid-way and resumed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

from saelab.autointerp.collect import collect_examples
from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.decompositions import neurons, sae_directions
from saelab.autointerp.explainers.ngram import NgramPatternExplainer
from saelab.autointerp.explainers.top_tokens import TopTokensExplainer
from saelab.autointerp.explanation import NEVER_FIRES
from saelab.autointerp.scorers.simulation import simulation_score
from saelab.autointerp.sources import Chunk, TextSource
from tests.conftest import random_sae

HOOK = "blocks.0.hook_resid_pre"
PLANT_C = 50.0
SMALL = ExamplesConfig(window=8, n_explain=4, n_positives=4, n_negatives=4, n_hard_negatives=2, reservoir=16,
                       calibration_chunks=2, n_neighbours=2)  # fmt: skip

SUBJECTS = ["The dog", "A river", "My old dog", "The piano", "Her cat", "This city", "The dog next door", "A child"]
VERBS = ["ran across the field", "sat quietly by the door", "was loud at night", "looked tired today",
         "made everyone smile", "stayed in the garden"]  # fmt: skip
TEXTS = [f"{SUBJECTS[i % len(SUBJECTS)]} {VERBS[i % len(VERBS)]}, and then it rained for {i} hours." for i in range(40)]


def planted_sae(model, token_ids: list[int], c: float = PLANT_C) -> StandardSAE:
    """Feature j is 1 on token ``token_ids[j]`` and far below 0 on tokens whose embedding is
    not nearly parallel to it: ``W_enc[:, j] = c e_t / |e_t|^2``, ``b_enc[j] = -(c - 1)``."""
    d = model.cfg.d_model
    cfg = StandardSAEConfig(
        d_in=d, d_sae=len(token_ids), metadata=SAEMetadata(hook_name=HOOK, model_name="smollm2-135m")
    )
    sae = StandardSAE(cfg)
    emb = model.W_E.detach().float()
    with torch.no_grad():
        for j, t in enumerate(token_ids):
            sae.W_enc[:, j] = c * emb[t] / emb[t].dot(emb[t])
            sae.W_dec[j] = emb[t] / emb[t].norm()
        sae.b_enc.fill_(-(c - 1))
        sae.b_dec.zero_()
    return sae.eval()


def one_token(model, text: str) -> int:
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, ids
    return ids[0]


@pytest.fixture(scope="module")
def planted(model):
    dog, zebra = one_token(model, " dog"), one_token(model, " zebra")
    sae = planted_sae(model, [dog, zebra])
    source = TextSource(model, TEXTS, HOOK, batch_size=16)
    examples = collect_examples(source, sae_directions(sae), model, features=[0, 1], config=SMALL, cache=False,
                                progress=False)  # fmt: skip
    return dog, zebra, sae, source, examples


@pytest.mark.slow
def test_planted_feature_fires_only_on_its_token(model, planted):
    dog, zebra, sae, source, _ = planted
    ids = sorted({t for i in range(len(TEXTS)) for t in source.token_ids(i)})
    assert dog in ids and zebra not in ids
    # The planted encoder must single out its token among every token of the texts.
    pre = model.W_E.detach()[ids].float() @ sae.W_enc.detach() + sae.b_enc.detach()
    fires = {ids[i] for i in (pre[:, 0] > 0).nonzero().flatten().tolist()}
    assert fires == {dog}
    assert (pre[:, 1] <= 0).all()
    # And the hook really is the embedding: the chunk's activations are W_E rows.
    chunk = source.chunk(0)
    torch.testing.assert_close(chunk.acts[chunk.valid], model.W_E.detach()[chunk.tokens[chunk.valid]].float())


@pytest.mark.slow
def test_planted_feature_examples(model, planted):
    dog, _, _, source, examples = planted
    ex = examples[0]
    assert ex.fires and ex.threshold == 0.0
    for context in ex.explain:
        assert context.token_ids[int(np.argmax(context.acts))] == dog
        assert max(context.acts) == pytest.approx(1.0, abs=1e-2)
    explanation = TopTokensExplainer().explain(ex)
    assert explanation.ok and '" dog"' in explanation.text
    contexts, labels = ex.scoring_contexts()
    assert labels.sum() > 0 and (labels == 0).sum() > 0
    assert simulation_score(explanation.text, contexts).correlation > 0.9
    held_in = {c.source for c in ex.explain}
    assert held_in.isdisjoint(c.source for c in (*ex.positives, *ex.negatives, *ex.hard_negatives))
    assert all(dog in c.token_ids for c in ex.positives)
    assert all(dog not in c.token_ids for c in ex.negatives)
    occurrences = sum(source.token_ids(i).count(dog) for i in range(len(TEXTS)))
    assert examples.n_tokens == source.n_tokens
    assert ex.frequency == pytest.approx(occurrences / source.n_tokens)


@pytest.mark.slow
def test_feature_that_never_fires_is_skipped(planted):
    ex = planted[-1][1]
    assert not ex.fires and ex.frequency == 0.0 and ex.explain == () and ex.positives == ()
    for explainer in (TopTokensExplainer(), NgramPatternExplainer()):
        result = explainer.explain(ex)
        assert not result.ok and result.skipped == NEVER_FIRES


@pytest.mark.slow
def test_feature_list_is_checked(model):
    sae = random_sae(model.cfg.d_model, 8, HOOK)
    source = TextSource(model, TEXTS[:4], HOOK)
    with pytest.raises(ValueError, match="features is empty"):
        collect_examples(source, sae_directions(sae), model, features=[], cache=False, progress=False)
    with pytest.raises(ValueError, match=r"out of range.*8 features"):
        collect_examples(source, sae_directions(sae), model, features=[3, 8], cache=False, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        collect_examples(source, sae_directions(sae), model, features=[-1], cache=False, progress=False)


@dataclass
class CountingSource:
    """A real source that records which chunks were read, and can be told to fail at one."""

    inner: TextSource
    fail_at: int | None = None

    def __post_init__(self) -> None:
        self.key, self.n_chunks, self.n_tokens = self.inner.key, self.inner.n_chunks, self.inner.n_tokens
        self.reads: list[int] = []

    def chunk(self, index: int) -> Chunk:
        if index == self.fail_at:
            raise KeyboardInterrupt
        self.reads.append(index)
        return self.inner.chunk(index)

    def token_ids(self, seq: int) -> list[int]:
        return self.inner.token_ids(seq)


def _dicts(example_set) -> dict[int, dict]:
    return {ex.feature: ex.to_dict() for ex in example_set}


@pytest.mark.slow
def test_interrupted_pass_resumes_where_it_stopped(model, tmp_path, monkeypatch):
    sae = random_sae(model.cfg.d_model, 12, HOOK, bias=0.0, input_norm=1.0)
    dec, inner = sae_directions(sae), TextSource(model, TEXTS, HOOK, batch_size=8)  # 5 chunks
    cfg = ExamplesConfig(**{**SMALL.to_dict(), "checkpoint_every_s": 0.0})
    features = [0, 3, 5, 7, 11]
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "fresh"))
    whole = collect_examples(inner, dec, model, features=features, config=cfg, progress=False)
    assert any(ex.fires for ex in whole) and any(ex.negatives for ex in whole)

    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "resumed"))
    broken = CountingSource(inner, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        collect_examples(broken, dec, model, features=features, config=cfg, progress=False)
    assert 0 in broken.reads and 1 in broken.reads
    assert list((tmp_path / "resumed").rglob("*.partial.pt"))
    rerun = CountingSource(inner)
    resumed = collect_examples(rerun, dec, model, features=features, config=cfg, progress=False)
    assert rerun.reads == [2, 3, 4]  # neither the finished chunks nor the calibration again
    assert _dicts(resumed) == _dicts(whole)
    assert resumed.n_tokens == whole.n_tokens == inner.n_tokens
    assert not list((tmp_path / "resumed").rglob("*.partial.pt"))

    cached_source = CountingSource(inner)
    cached = collect_examples(cached_source, dec, model, features=features, config=cfg, progress=False)
    assert cached_source.reads == [] and cached.seconds == 0.0
    assert _dicts(cached) == _dicts(whole)


@dataclass
class PlantedDenseSource:
    """Valid tokens only, planted activations: dim 0 has a heavy negative tail, dim 1 a
    heavy positive one, dims 2-3 are Gaussian."""

    acts: torch.Tensor  # [n_seq, pos, 4]
    tokens: torch.Tensor  # [n_seq, pos]
    per_chunk: int = 10

    def __post_init__(self) -> None:
        self.key = "planted-dense"
        self.n_chunks = -(-self.acts.shape[0] // self.per_chunk)
        self.n_tokens = self.acts.shape[0] * self.acts.shape[1]

    def chunk(self, index: int) -> Chunk:
        a, b = index * self.per_chunk, min(self.acts.shape[0], (index + 1) * self.per_chunk)
        valid = torch.ones(self.tokens[a:b].shape, dtype=torch.bool)
        return Chunk(torch.arange(a, b), self.tokens[a:b], self.acts[a:b], valid)

    def token_ids(self, seq: int) -> list[int]:
        return self.tokens[seq].tolist()


@pytest.mark.slow
def test_dense_directions_get_quantile_threshold_and_heavy_tail_sign(model):
    gen = torch.Generator().manual_seed(0)
    n_seq, pos = 40, 64
    exp = torch.empty(n_seq, pos, 2).exponential_(generator=gen)
    acts = torch.cat([-exp[..., :1], exp[..., 1:], torch.randn(n_seq, pos, 2, generator=gen)], dim=-1)
    tokens = torch.randint(100, 5000, (n_seq, pos), generator=gen)
    source = PlantedDenseSource(acts, tokens)
    rate = 0.02
    cfg = ExamplesConfig(window=8, n_explain=4, n_positives=4, n_negatives=4, n_hard_negatives=2, reservoir=16,
                         calibration_chunks=source.n_chunks, dense_rate=rate)  # fmt: skip
    examples = collect_examples(source, neurons(4), model, config=cfg, cache=False, progress=False)
    flat = acts.reshape(-1, 4)
    for feature, sign in ((0, -1.0), (1, 1.0)):
        ex = examples[feature]
        expected = torch.quantile(sign * flat[:, feature], 1 - rate).item()
        assert ex.threshold == pytest.approx(expected, rel=1e-4)
        assert ex.threshold > 2.0  # the exponential tail's 98% point is ~3.9, on the heavy side
        assert ex.max_activation == pytest.approx((sign * flat[:, feature]).max().item(), rel=1e-3)
        assert all(c.max_act > ex.threshold for c in ex.explain)
        assert ex.frequency == pytest.approx(rate, abs=0.005)


@pytest.mark.slow
def test_a_pass_runs_the_model_once_per_chunk(model):
    """Calibration chunks are kept and served again, so texts are never run through the model twice."""
    sae = random_sae(model.cfg.d_model, 12, HOOK, bias=0.0, input_norm=1.0)
    source = CountingSource(TextSource(model, TEXTS, HOOK, batch_size=8))
    collect_examples(source, sae_directions(sae), model, features=[0, 1], config=SMALL, cache=False, progress=False)
    assert sorted(source.reads) == list(range(source.n_chunks))
