"""Emergence during training: planted features appear at the step they were planted (hand-made
snapshots, and a real training run whose data gains a feature part-way), a specialist that
becomes separating is found at that step, and bad inputs are explained."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from saelab.evolution import feature_emergence, specialist_emergence
from saelab.evolution.emergence import SpecialistEmergence, first_and_stable
from saelab.train import config_for, load_snapshots
from saelab.train.trainer import RunConfig, fit
from tests._synthetic import synthetic_dictionary

D_IN, N_FEATURES = 64, 100
STEPS = [0, 10, 20, 30, 40, 50]
PLANTED = {0: 0, 1: 10, 2: 20, 3: 30, 4: 50}
"""Final feature -> the first step at which the snapshots hold it."""


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def planted_snapshots(seed: int = 0) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """A final dictionary and snapshots: planted feature j (orthonormal to the others) is
    present, plus noise, from PLANTED[j] on, and a random direction before; every other unit
    is a fresh random direction at every step. The random directions avoid the planted span,
    so a planted feature cannot be matched before its step by chance."""
    gen = torch.Generator().manual_seed(seed)
    final = unit(torch.randn(N_FEATURES, D_IN, generator=gen))
    basis, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=gen))
    final[: len(PLANTED)] = basis.T[: len(PLANTED)]
    outside = basis.T[len(PLANTED) :]  # directions orthogonal to every planted one
    snapshots = {}
    for step in STEPS:
        snap = unit(torch.randn(N_FEATURES, D_IN - len(PLANTED), generator=gen) @ outside)
        for j, start in PLANTED.items():
            if step >= start:
                snap[j] = final[j] + 0.1 * torch.randn(D_IN, generator=gen) / D_IN**0.5
        snapshots[step] = snap
    return final, snapshots


def test_planted_features_appear_exactly_when_planted():
    final, snapshots = planted_snapshots()
    emergence = feature_emergence(snapshots, final)
    per_feature = emergence.per_feature
    for j, start in PLANTED.items():
        assert per_feature.loc[j, "first_step"] == start and per_feature.loc[j, "stable_step"] == start
    # The unplanted features are matched by chance only, at about the rate the null passes
    # its own threshold (1% in expectation; a 99th percentile of 100 draws is itself noisy).
    unplanted = emergence.long[~emergence.long["feature"].isin(list(PLANTED))]
    chance = np.array([unplanted.loc[unplanted["step"] == step, "matched"].to_numpy().mean() for step in STEPS])
    null_rate = emergence.per_step["null_rate"].to_numpy()
    assert chance.mean() <= 0.05 and abs(chance.mean() - null_rate.mean()) <= 0.03
    assert (null_rate <= 0.1).all()
    assert per_feature.drop(index=list(PLANTED))["first_step"].isna().to_numpy().mean() >= 0.8
    # The planted ones keep their unit index, so the same-unit cosine sees them too.
    long = emergence.long
    planted_rows = long.loc[(long["feature"] == 3).to_numpy() & (long["step"] >= 30).to_numpy()]
    assert (planted_rows["same_unit_similarity"].to_numpy() > 0.99).all()
    assert (planted_rows["best_match"].to_numpy() == 3).all()


def test_tidy_frames_and_per_step_summary():
    final, snapshots = planted_snapshots()
    emergence = feature_emergence(snapshots, final)
    assert list(emergence.long.columns) == ["feature", "step", "best_match", "similarity", "same_unit_similarity",
                                            "threshold", "matched"]  # fmt: skip
    assert len(emergence.long) == N_FEATURES * len(STEPS) and emergence.steps == STEPS
    assert str(emergence.per_feature["first_step"].dtype) == "Int64"
    per_step = emergence.per_step
    assert {"threshold", "null_rate", "matched_share", "appeared_share", "stable_share", "median", "q25", "q75",
            "same_unit_median"} <= set(per_step.columns)  # fmt: skip
    assert per_step["appeared_share"].is_monotonic_increasing
    share, q25, median, q75 = (per_step[c].to_numpy() for c in ("appeared_share", "q25", "median", "q75"))
    assert (share >= per_step["matched_share"].to_numpy() - 1e-12).all()
    assert (q25 <= median).all() and (median <= q75).all()
    assert emergence.summary()["steps"] == STEPS


def test_first_and_stable_steps():
    flags = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 1, 1]], dtype=bool)  # steps x features
    first, stable = first_and_stable(flags, [0, 5, 9])
    assert first.tolist() == [0, pd.NA, 5, 0]
    assert stable.tolist() == [9, pd.NA, 5, 0]


def test_snapshots_as_objects_pairs_or_a_mapping():
    final, snapshots = planted_snapshots()
    objects = [SimpleNamespace(step=s, sae=SimpleNamespace(W_dec=d)) for s, d in reversed(snapshots.items())]
    pairs = list(snapshots.items())
    expected = feature_emergence(snapshots, final).per_feature
    for given in (objects, pairs):
        pd.testing.assert_frame_equal(feature_emergence(given, SimpleNamespace(W_dec=final)).per_feature, expected)


def test_a_final_with_another_width_is_compared_without_same_unit():
    final, snapshots = planted_snapshots()
    emergence = feature_emergence(snapshots, final[: len(PLANTED)])
    assert emergence.per_feature["first_step"].tolist() == list(PLANTED.values())
    assert emergence.long["same_unit_similarity"].isna().to_numpy().all()


@pytest.mark.parametrize(
    ("snapshots", "message"),
    [
        ({}, "snapshots is empty"),
        ({0: torch.randn(5, 8)}, "different d_in"),
        ({-1: torch.randn(5, D_IN)}, "integers >= 0"),
        ([(0, torch.randn(5, D_IN)), (0, torch.randn(5, D_IN))], "more than once"),
        ({0: torch.zeros(5, D_IN)}, "norm 0"),
    ],
)
def test_bad_snapshots_are_explained(snapshots, message):
    with pytest.raises(ValueError, match=message):
        feature_emergence(snapshots, torch.randn(10, D_IN))


def test_snapshots_without_a_step_are_refused():
    with pytest.raises(TypeError, match="with a step"):
        feature_emergence([torch.randn(5, D_IN)], torch.randn(10, D_IN))


# -- a real training run whose data gains planted features part-way -------------------------

ENTRY = {8: 100, 9: 200, 10: 300}
"""Planted atom -> the training step from which the data holds it (the others: from step 0)."""
EVERY, N_ATOMS, BATCH = 25, 12, 128


def curriculum_source(atoms: torch.Tensor):
    """Batch i: each atom active with probability 0.15 (magnitude 0.5 to 3), atoms of ENTRY
    only from their entry step; a pure function of i, so a valid resumable source."""
    entry = torch.tensor([ENTRY.get(j, 0) for j in range(N_ATOMS)])

    def source(start: int):
        index = start
        while True:
            gen = torch.Generator().manual_seed(1000 + index)
            active = (torch.rand(BATCH, N_ATOMS, generator=gen) < 0.15) & (entry <= index)
            yield (active * (0.5 + 2.5 * torch.rand(BATCH, N_ATOMS, generator=gen))) @ atoms
            index += 1

    return source


def test_a_trained_feature_emerges_just_after_it_enters_the_data(tmp_path):
    # Not seed 0: the SAE's initial decoder draws from torch's seed-0 stream too, and would
    # start out holding the atoms.
    atoms = synthetic_dictionary(N_ATOMS, 64, seed=100)
    cfg = config_for("topk", d_in=64, d_sae=64, k=2, batch_size=BATCH, total_steps=450, lr=5e-3, lr_warmup_steps=0,
                     lr_decay_steps=0, dead_tokens_threshold=20 * BATCH, device="cpu", seed=0)  # fmt: skip
    result = fit(cfg, curriculum_source(atoms), RunConfig(checkpoint_dir=str(tmp_path), snapshot_every=EVERY,
                                                          progress=False))  # fmt: skip
    snapshots = load_snapshots(tmp_path)
    assert [s.step for s in snapshots] == list(range(0, 451, EVERY))
    emergence = feature_emergence(snapshots, result.sae)
    cosines = unit(result.sae.W_dec.detach()) @ atoms.T
    assert bool((cosines.max(dim=0).values > 0.98).all()), "the run did not learn every planted atom"
    learned = cosines.argmax(dim=0).tolist()  # the final feature of each atom
    for atom, entry in ENTRY.items():
        first = emergence.per_feature.loc[learned[atom], "first_step"]
        assert entry < first <= entry + 2 * EVERY, f"atom {atom} entered at {entry} but appeared at {first}"
        assert emergence.per_feature.loc[learned[atom], "stable_step"] == first
    present = emergence.per_feature.loc[[learned[a] for a in range(N_ATOMS) if a not in ENTRY], "first_step"]
    assert (present <= 2 * EVERY).all()


# -- specialists --------------------------------------------------------------------------

CATEGORIES = ("a", "b", "c")
SPECIALIST_STEPS = [0, 10, 20, 30]


def planted_pooled(seed: int = 0) -> tuple[dict[int, np.ndarray], list[str]]:
    """Pooled activations of 60 texts (20 per category) and 10 features at each step: feature
    3 separates category a from step 10 on, feature 7 category b from step 20; feature 5
    (tracked for c) never separates; the rest is noise."""
    rng = np.random.default_rng(seed)
    labels = [c for c in CATEGORIES for _ in range(20)]
    inside = {c: np.array([label == c for label in labels]) for c in CATEGORIES}
    pooled = {}
    for step in SPECIALIST_STEPS:
        x = rng.random((60, 10))
        x[:, 3] += 2.0 * inside["a"] * (step >= 10)
        x[:, 7] += 2.0 * inside["b"] * (step >= 20)
        pooled[step] = x
    return pooled, labels


def test_a_specialist_is_found_when_it_starts_separating():
    pooled, labels = planted_pooled()
    result = specialist_emergence(pooled, labels, {"a": 3, "b": 7, "c": 5})
    assert isinstance(result, SpecialistEmergence)
    per_category = result.per_category
    assert per_category["feature"].tolist() == [3, 7, 5]
    assert per_category["first_step"].tolist() == [10, 20, pd.NA]
    assert per_category["stable_step"].tolist() == [10, 20, pd.NA]
    long = result.long.set_index(["category", "step"])
    assert long.loc[("a", 10), "auroc"] == 1.0 and long.loc[("a", 10), "q_value"] < 0.05
    assert long.loc[("a", 0), "q_value"] > 0.05 and not long.loc[("c", 30), "is_specialist"]
    assert len(result.long) == len(CATEGORIES) * len(SPECIALIST_STEPS)


def test_two_categories_may_share_one_feature():
    pooled, labels = planted_pooled()
    result = specialist_emergence(pooled, labels, {"a": 3, "c": 3})
    assert result.per_category["first_step"].tolist() == [10, pd.NA]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(snapshot_pooled={}), "snapshot_pooled is empty"),
        (dict(features={}), "features is empty"),
        (dict(features={"a": 10}), "out of range"),
        (dict(features={"z": 1}), "unknown categories"),
        (dict(labels=["a", "b"]), "labels has 2 entries"),
    ],
)
def test_bad_specialist_inputs_are_explained(change, message):
    pooled, labels = planted_pooled()
    kwargs: dict[str, Any] = dict(snapshot_pooled=pooled, labels=labels, features={"a": 3})
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        specialist_emergence(**kwargs)


def test_snapshots_of_different_widths_are_refused():
    pooled, labels = planted_pooled()
    pooled[30] = pooled[30][:, :8]
    with pytest.raises(ValueError, match="differ in shape"):
        specialist_emergence(pooled, labels, {"a": 3})


def test_the_result_records_its_options():
    pooled, labels = planted_pooled()
    result = specialist_emergence(pooled, labels, {"a": 3}, alpha=0.01, n_permutations=2000)
    assert dataclasses.asdict(result)["alpha"] == 0.01 and result.n_permutations == 2000
    assert result.per_category.loc["a", "first_step"] == 10
