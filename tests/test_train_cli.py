"""The CLI end to end on a tiny run: store -> train -> SAELens folder -> held-out evaluation."""

import pytest
import torch

import saelab
from saelab.train.__main__ import main, parse_args


def test_cli_defaults_follow_seed_000():
    args = parse_args([])
    assert (args.activation, args.batch_size, args.tokens, args.resume, args.use_wandb) == ("topk", 4096, 2_000_000, False, False)
    with pytest.raises(SystemExit):
        parse_args(["--activation", "sigmoid"])


@pytest.mark.slow
def test_cli_trains_saves_and_evaluates(tmp_path, monkeypatch, capsys, model):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sae"
    code = main([
        "--activation", "topk", "--layer", "1", "--tokens", "4096", "--batch-size", "512",
        "--hidden-dim", "64", "--k", "4", "--eval-sequences", "2", "--out", str(out), "--device", "cpu",
    ])
    assert code == 0
    sae = saelab.load_sae(out, device="cpu")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (576, 64)
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    feats = saelab.extract_features(model, sae, ["a tiny check"])
    assert feats.shape == (1, 64) and torch.isfinite(feats).all()
    printed = capsys.readouterr().out
    for row in ("train_l0", "explained_variance", "ce_loss_recovered", "dead_fraction"):
        assert row in printed


def test_markdown_table():
    import pandas as pd

    from saelab.train.pipeline import markdown_table

    frame = pd.DataFrame({"l0": [32.0, 31.5], "name": ["a", "b"]}, index=pd.Index(["x", "y"], name="sae"))
    assert markdown_table(frame).splitlines() == [
        "| sae | l0 | name |", "|---|---|---|", "| x | 32.000 | a |", "| y | 31.500 | b |",
    ]
