"""Sweeps written as 'k=16,32' or a JSON file become one config per member."""

from __future__ import annotations

import json

import pytest

from saelab.train import BatchTopKConfig, ReLUConfig, TopKConfig, config_for
from saelab.train.sweep_spec import parse_sweep, read_sweep_file, sweep_configs

BASE = config_for(
    "topk",
    d_in=16,
    d_sae=64,
    k=8,
    batch_size=32,
    total_steps=10,
    lr_warmup_steps=0,
    lr_decay_steps=0,
    device="cpu",
    lr=1e-3,
)


def test_axes_make_a_grid_of_members() -> None:
    members = parse_sweep(["k=4,8", "d-sae=32,64"])
    assert members == [{"k": 4, "d_sae": 32}, {"k": 4, "d_sae": 64}, {"k": 8, "d_sae": 32}, {"k": 8, "d_sae": 64}]
    configs = sweep_configs(BASE, members)
    assert [(c.k, c.d_sae) for c in configs if isinstance(c, TopKConfig)] == [(4, 32), (4, 64), (8, 32), (8, 64)]
    assert all(c.lr == 1e-3 and c.batch_size == 32 for c in configs)
    assert parse_sweep(["lr=1e-3,2e-3"]) == [{"lr": 0.001}, {"lr": 0.002}]


def test_a_file_may_mix_architectures(tmp_path) -> None:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([{"k": 4}, {"activation": "batchtopk"}, {"activation": "relu", "l1_coefficient": 2}]))
    topk, btk, relu = sweep_configs(BASE, read_sweep_file(path))
    assert isinstance(topk, TopKConfig) and topk.k == 4
    assert isinstance(btk, BatchTopKConfig) and btk.k == 8 and btk.d_sae == 64  # the base's k, width, ...
    assert isinstance(relu, ReLUConfig) and relu.l1_coefficient == 2 and relu.lr == 1e-3


def test_bad_sweeps_are_explained(tmp_path) -> None:
    with pytest.raises(ValueError, match="looks like 'k=16,32,64'"):
        parse_sweep(["k"])
    with pytest.raises(ValueError, match="names 'k' twice"):
        parse_sweep(["k=1", "k=2"])
    with pytest.raises(ValueError, match="The sweep is empty"):
        parse_sweep([])
    with pytest.raises(ValueError, match="topk has no field 'l1_coefficient'"):
        sweep_configs(BASE, [{"l1_coefficient": 3}])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"k": 3}))
    with pytest.raises(ValueError, match="JSON list of objects"):
        read_sweep_file(path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="lists no sweep member"):
        read_sweep_file(path)
