"""The CLI: its options, the config it builds for each architecture, and (slow) a tiny run
end to end: store -> train -> SAELens folder -> held-out evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saelab.extract.extract import extract_features
from saelab.saes import load_sae
from saelab.train import BatchTopKConfig, JumpReLUConfig, MatryoshkaBatchTopKConfig, ReLUConfig
from saelab.train.__main__ import build_config, main, parse_args


def test_cli_defaults():
    args = parse_args([])
    assert (args.activation, args.batch_size, args.tokens, args.resume, args.use_wandb) == (
        "topk", 4096, 2_000_000, False, False,
    )
    with pytest.raises(SystemExit):
        parse_args(["--activation", "sigmoid"])


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk"])
def test_every_registered_architecture_is_a_choice(activation):
    assert parse_args(["--activation", activation]).activation == activation


def test_options_go_to_the_architectures_that_have_them():
    def config(*argv: str):
        return build_config(parse_args(list(argv)), d_in=16, steps=100, model_name="m", hook="blocks.1.hook_resid_pre",
                            dataset="d")

    btk = config("--activation", "batchtopk", "--k", "7", "--hidden-dim", "64")
    assert type(btk) is BatchTopKConfig and btk.k == 7 and btk.d_sae == 64
    jump = config("--activation", "jumprelu", "--jumprelu-threshold", "0.3")
    assert type(jump) is JumpReLUConfig and jump.jumprelu_init_threshold == 0.3 and jump.jumprelu_bandwidth == 0.5
    relu = config("--activation", "relu")
    assert type(relu) is ReLUConfig and relu.d_sae == 8 * 16 and relu.lr == 2e-3  # short runs get the larger lr
    assert (relu.lr_warmup_steps, relu.lr_decay_steps, relu.hook_name) == (10, 20, "blocks.1.hook_resid_pre")


@pytest.mark.slow
def test_cli_trains_saves_and_evaluates(tmp_path, monkeypatch, capsys, model):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sae"
    code = main([
        "--activation", "topk", "--layer", "1", "--tokens", "4096", "--batch-size", "512",
        "--hidden-dim", "64", "--k", "4", "--eval-sequences", "2", "--out", str(out), "--device", "cpu",
    ])
    assert code == 0
    sae = load_sae(out, device="cpu")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (576, 64)
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    feats = extract_features(model, sae, ["a tiny check"])
    assert feats.shape == (1, 64) and torch.isfinite(feats).all()
    printed = capsys.readouterr().out
    for row in ("train_l0", "explained_variance", "ce_loss_recovered", "dead_fraction"):
        assert row in printed


@pytest.mark.slow
def test_a_cli_sweep_trains_saves_and_evaluates_every_member(tmp_path, monkeypatch, capsys, model):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    code = main([
        "--sweep", "k=4,8", "--layer", "1", "--tokens", "4096", "--batch-size", "512", "--hidden-dim", "64",
        "--eval-sequences", "2", "--out", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name.split("-")[:3] for f in folders] == [["topk", "64", "k4"], ["topk", "64", "k8"]]
    for folder, k in zip(folders, (4, 8), strict=True):
        sae = load_sae(folder, device="cpu")
        assert sae.cfg.architecture() == "topk" and getattr(sae.cfg, "k", None) == k
        feats = extract_features(model, sae, ["a tiny check"])  # pooled over the tokens
        assert feats.shape == (1, 64) and torch.isfinite(feats).all()
    printed = capsys.readouterr().out
    assert "Saved 2 SAEs" in printed and "ce_loss_recovered" in printed


def test_markdown_table():
    import pandas as pd

    from saelab.train.pipeline import markdown_table

    frame = pd.DataFrame({"l0": [32.0, 31.5], "name": ["a", "b"]}, index=pd.Index(["x", "y"], name="sae"))
    assert markdown_table(frame).splitlines() == [
        "| sae | l0 | name |", "|---|---|---|", "| x | 32.000 | a |", "| y | 31.500 | b |",
    ]


@pytest.mark.slow
def test_torchrun_trains_one_sae_per_group_of_ranks(tmp_path, model):
    """`torchrun --nproc_per_node=2 -m saelab.train --layers 1 2`: both ranks build one store,
    then each trains one hook's SAE as a group of one; each equals what plain training of
    that hook on the same store gives."""
    from saelab.train import RunConfig, pipeline, save_sae

    argv = ["--layers", "1", "2", "--tokens", "4096", "--batch-size", "512", "--hidden-dim", "64", "--k", "4",
            "--eval-sequences", "0", "--out", str(tmp_path / "saes"), "--dist-timeout", "120"]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "saelab.train", *argv],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    args = parse_args(argv)
    store = pipeline.activation_store(model, ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"],
                                      n_tokens=int(4096 * 1.06) + 1, progress=False)  # reused, not rebuilt
    for hook in store.hooks:
        cfg = build_config(args, d_in=576, steps=8, model_name=model.cfg.model_name, hook=hook,
                           dataset=f"saelab offline mix, {store.n_rows('all')} tokens (store {store.key})")
        alone = pipeline.train_on_store(store, cfg, RunConfig(progress=False)).sae
        save_sae(alone, tmp_path / "alone" / hook)
        ours = load_file(str(tmp_path / "saes" / hook / "sae_weights.safetensors"))
        reference = load_file(str(tmp_path / "alone" / hook / "sae_weights.safetensors"))
        assert ours.keys() == reference.keys()
        for name, value in reference.items():
            torch.testing.assert_close(ours[name], value, atol=1e-5, rtol=1e-5, msg=f"{hook} {name}")


def test_a_sweep_takes_one_hook_and_its_members_set_their_own_sparsity():
    args = parse_args(["--sweep", "k=16,32", "--activation", "matryoshka_batchtopk", "--prefix-sizes", "16", "64"])
    assert args.sweep == ["k=16,32"]
    cfg = build_config(args, d_in=16, steps=100, model_name="m", hook="blocks.1.hook_resid_pre", dataset="d")
    assert isinstance(cfg, MatryoshkaBatchTopKConfig) and cfg.prefix_sizes == (16, 64)
    for bad in (["--sweep", "k=1", "--layers", "1", "2"], ["--sweep", "k=1", "--target-l0", "32"],
                ["--sweep", "k=1", "--sweep-file", "s.json"]):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args(bad)
