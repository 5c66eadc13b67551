"""Steering arms: each row of one batch runs its own edit at its own hook, and each edit is
the one its method names (checked against ``steer``, planted vectors and planted SAEs)."""

from __future__ import annotations

import pytest
import torch

from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import tokenize
from saelab.interventions.arms import NO_EDIT, Arm, ArmTools, RowSteering
from saelab.interventions.diffmean import DiffMeanVectors
from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.steering import steer

EARLY, LATE = "blocks.2.hook_resid_pre", "blocks.7.hook_resid_pre"
D_SAE = 16
PROMPT = "The plan is to go to the shop"


def _stats(value: float = 3.0) -> FeatureStats:
    return FeatureStats(torch.full((D_SAE,), value), torch.zeros(D_SAE), torch.zeros(D_SAE), n_texts=1, n_tokens=1)


@pytest.fixture(scope="module")
def tools(tiny_model, make_sae):
    d = tiny_model.cfg.d_model
    means = torch.randn(4, d, generator=torch.Generator().manual_seed(1)) * 10
    diffmean = DiffMeanVectors({EARLY: means, LATE: means * 2}, ["python", "python", "math", "math"])
    return ArmTools(
        saes={EARLY: make_sae(d, D_SAE, EARLY, seed=1), LATE: make_sae(d, D_SAE, LATE, seed=2)},
        stats={EARLY: _stats(3.0), LATE: _stats(5.0)}, diffmean=diffmean,
        instructions={"python": "Write Python code."},
    )  # fmt: skip


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return torch.tensor(tokenize(tiny_model, [PROMPT]).ids)


def _edited_residual(model, hook: str, run) -> torch.Tensor:
    """The residual a ``blocks.L.hook_resid_pre`` edit leaves, read where block L's RMSNorm
    takes it apart (normalised x times its scale): hooks at the edited point itself run
    before the edit."""
    layer = int(hook.split(".")[1])
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(x, hook=None):  # noqa: ARG001
            seen[name] = x.detach().clone()

        return fn

    hooks = [(f"blocks.{layer}.ln1.hook_{n}", keep(n)) for n in ("scale", "normalized")]
    with model.hooks(fwd_hooks=hooks):
        run()
    return seen["normalized"] * seen["scale"]


def test_an_sae_arm_steers_as_steer_does(tiny_model, tools, tokens):
    for method, mode in (("sae", "add"), ("clamp", "clamp")):
        logits = RowSteering.build(tiny_model, [Arm(method, "", EARLY, 3, 4.0)], tools).run(tokens)
        with steer(tiny_model, tools.saes[EARLY], {3: 4.0}, mode=mode, stats=tools.stats[EARLY]), torch.no_grad():
            expected = tiny_model(tokens)
        torch.testing.assert_close(logits, expected)


def test_every_row_of_a_mixed_batch_gets_its_own_edit(tiny_model, tools, tokens):
    arms = [
        NO_EDIT,
        Arm("sae", "", EARLY, 3, 4.0),
        Arm("diffmean", "python", LATE, -1, 0.5),
        Arm("clamp", "", LATE, 1, 2.0),
        Arm("prompting", "python"),
        Arm("random", "python", EARLY, 8, 4.0),
    ]
    batch = tokens.repeat(len(arms), 1)
    steering = RowSteering.build(tiny_model, arms, tools)
    assert set(steering.edits) == {EARLY, LATE}
    with torch.no_grad():
        clean = tiny_model(tokens)[0]
        logits = steering.run(batch)
    # Rows with no edit are the clean model, whatever the other rows do.
    torch.testing.assert_close(logits[0], clean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[4], clean, atol=1e-4, rtol=1e-4)
    alone = RowSteering.build(tiny_model, [arms[1]], tools).run(tokens)[0]
    torch.testing.assert_close(logits[1], alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits[5], logits[1], atol=1e-2)  # another feature, another edit
    # At LATE: the DiffMean row gets exactly 0.5 x the vector at every position but BOS, the
    # clamp row sets feature 1 to 2 x its typical max (5) through the splice, others nothing.
    x = run_hooks(tiny_model, [LATE], tokens)[LATE][0]
    edited = _edited_residual(tiny_model, LATE, lambda: steering.run(batch))
    delta = edited - x
    vector = tools.diffmean.vector("python", LATE) * 0.5
    torch.testing.assert_close(delta[2, 1:], vector.expand_as(delta[2, 1:]), atol=1e-3, rtol=1e-4)
    assert delta[2, 0].abs().max() < 1e-3
    sae = tools.saes[LATE]
    f1 = encode_activations(sae, x)[:, 1]
    expected = (10.0 - f1)[:, None] * sae.W_dec.detach()[1]
    torch.testing.assert_close(delta[3, 1:], expected[1:], atol=1e-3, rtol=1e-4)
    assert delta[3, 0].abs().max() < 1e-3
    for row in (0, 4):
        assert delta[row].abs().max() < 1e-3


def test_an_edit_mask_says_which_positions_change(tiny_model, tools, tokens):
    arm = Arm("diffmean", "math", LATE, -1, 1.0)
    steering = RowSteering.build(tiny_model, [arm], tools)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[0, 3] = True
    x = run_hooks(tiny_model, [LATE], tokens)[LATE][0]
    delta = _edited_residual(tiny_model, LATE, lambda: steering.run(tokens, edit_mask=mask))[0] - x
    torch.testing.assert_close(delta[3], tools.diffmean.vector("math", LATE), atol=1e-3, rtol=1e-4)
    assert delta[torch.arange(len(delta)) != 3].abs().max() < 1e-3
    assert steering.mask is None  # the mask lasts one pass


def test_a_clamp_sets_the_feature_of_a_planted_sae(tiny_model, make_sae, tokens):
    """Orthonormal decoder rows, encoder = decoder transposed, feature 4 always on: encoding
    the clamped residual reads the target back exactly."""
    d, k = tiny_model.cfg.d_model, 4
    sae = make_sae(d, D_SAE, EARLY, seed=9)
    q, _ = torch.linalg.qr(torch.randn(d, D_SAE, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_dec.zero_()
        sae.b_enc.fill_(-1e4)
        sae.b_enc[k] = 1e4
    tools = ArmTools(saes={EARLY: sae}, stats={EARLY: _stats(5.0)})
    steering = RowSteering.build(tiny_model, [Arm("clamp", "", EARLY, k, 3.0)], tools)
    edited = _edited_residual(tiny_model, EARLY, lambda: steering.run(tokens))[0]
    with torch.no_grad():
        feats = encode_activations(sae, edited)[:, k]
    torch.testing.assert_close(feats[1:], torch.full_like(feats[1:], 15.0), atol=1e-2, rtol=0)
    assert abs(float(feats[0]) - 15.0) > 1.0  # BOS keeps its own value


def test_arms_without_an_edit_install_nothing(tiny_model, tools):
    assert RowSteering.build(tiny_model, [NO_EDIT, Arm("prompting", "python")], tools).edits == {}
    assert not NO_EDIT.edits and not Arm("prompting", "python").edits and Arm("random", "", EARLY, 1, 2).edits
    assert Arm("sae", "", EARLY, 949, 8.0).label == "sae #949 @2 x8"
    assert Arm("prompting", "python").label == "prompting python"


def test_bad_arms_are_refused(tiny_model, tools):
    with pytest.raises(ValueError, match="method must be one of"):
        Arm("steer")
    with pytest.raises(ValueError, match="not one of this comparison's hooks"):
        tools.check(Arm("sae", "", "blocks.9.hook_resid_pre", 1, 2.0))
    with pytest.raises(ValueError, match="not one of this comparison's hooks"):
        tools.check(Arm("diffmean", "python", "blocks.9.hook_resid_pre", -1, 1.0))
    for feature in (-1, D_SAE):
        with pytest.raises(ValueError, match="out of range"):
            RowSteering.build(tiny_model, [Arm("sae", "", EARLY, feature, 2.0)], tools)
    with pytest.raises(ValueError, match="no instruction for 'math'"):
        tools.check(Arm("prompting", "math"))
    with pytest.raises(ValueError, match="needs DiffMean vectors"):
        ArmTools(tools.saes, tools.stats).check(Arm("diffmean", "python", EARLY, -1, 1.0))
    with pytest.raises(ValueError, match="at least 2 texts of 'urls'"):
        RowSteering.build(tiny_model, [Arm("diffmean", "urls", EARLY, -1, 1.0)], tools)
    dead = ArmTools(tools.saes, {EARLY: _stats(0.0), LATE: _stats(0.0)})
    with pytest.raises(ValueError, match="never fires"):
        dead.raw(Arm("sae", "", EARLY, 1, 2.0))
