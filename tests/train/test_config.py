"""Training configs: one class per architecture, a JSON round trip that remembers which,
and validation that names every problem."""

from __future__ import annotations

import dataclasses
import json

import pytest

from saelab.train import BatchTopKConfig, JumpReLUConfig, ReLUConfig, TopKConfig, TrainConfig, config_for
from saelab.train.registry import architecture_names


def test_json_round_trip_keeps_the_architecture():
    default = TopKConfig()
    assert TrainConfig.from_json(default.to_json()) == default
    custom = JumpReLUConfig(d_in=16, d_sae=64, adam_betas=(0.8, 0.99), jumprelu_bandwidth=0.2,
                            compute_dtype="bfloat16", kernel="reference", device="cpu", context_size=128, seed=7)
    text = custom.to_json()
    assert json.loads(text)["adam_betas"] == [0.8, 0.99]
    assert json.loads(text)["activation"] == "jumprelu"
    again = TrainConfig.from_json(text)
    assert type(again) is JumpReLUConfig and again == custom and again.adam_betas == (0.8, 0.99)
    assert TrainConfig.from_dict(custom.to_dict()) == custom
    assert JumpReLUConfig.from_dict(custom.to_dict()) == custom  # its own name is accepted


@pytest.mark.parametrize("name", architecture_names())
def test_every_architecture_round_trips_through_the_base(name):
    cfg = config_for(name, d_in=16, d_sae=32, seed=3)
    assert cfg.activation == name and cfg.to_dict()["activation"] == name
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_config_for_builds_the_architectures_class():
    assert type(config_for("relu", l1_coefficient=2.0)) is ReLUConfig
    assert type(config_for("batchtopk", k=8)) is BatchTopKConfig
    topk = config_for("topk", k=7, d_in=16)
    assert isinstance(topk, TopKConfig) and topk.k == 7


def test_options_of_another_architecture_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"Unknown TopKConfig field\(s\) \['tied_decoder'\]"):
        config_for("topk", tied_decoder=True)
    with pytest.raises(ValueError, match=r"Unknown ReLUConfig field\(s\) \['k'\]"):
        config_for("relu", k=32)
    with pytest.raises(ValueError, match=r"Unknown TopKConfig field\(s\) \['hidden_dim'\]"):
        TrainConfig.from_dict({"activation": "topk", "hidden_dim": 10})


def test_dispatch_needs_a_known_activation():
    with pytest.raises(ValueError, match=r"Unknown SAE architecture 'gelu'; valid: \['relu', 'jumprelu', 'topk'"):
        TrainConfig.from_dict({"activation": "gelu"})
    with pytest.raises(ValueError, match="needs an 'activation' key"):
        TrainConfig.from_dict({"d_in": 8})
    with pytest.raises(ValueError, match="TopKConfig is activation='topk', but the data says 'relu'"):
        TopKConfig.from_dict({"activation": "relu"})


def test_the_base_is_not_an_architecture():
    with pytest.raises(TypeError, match="construct an architecture's config"):
        TrainConfig()


def test_defaults_and_helpers():
    cfg = TopKConfig()
    assert cfg.activation == "topk" and cfg.d_sae == 8 * cfg.d_in and cfg.k == 32
    assert cfg.resolved_aux_k == cfg.d_in // 2
    assert TopKConfig(d_in=8, d_sae=4, k=2).resolved_aux_k == 4  # never more than d_sae
    assert BatchTopKConfig().topk_threshold_lr == 0.01  # SAELens's default
    assert isinstance(BatchTopKConfig(), TopKConfig)  # it shares TopK's options


def test_replace_validates_again():
    cfg = TopKConfig(d_in=8, d_sae=16, k=4)
    assert dataclasses.replace(cfg, k=16).k == 16
    with pytest.raises(ValueError, match="k=17 is larger than d_sae=16"):
        dataclasses.replace(cfg, k=17)


@pytest.mark.parametrize(
    ("activation", "changes", "message"),
    [
        ("topk", dict(k=5000), "k=5000 is larger than d_sae=4608"),
        ("batchtopk", dict(k=5000), "k=5000 is larger than d_sae=4608"),
        ("topk", dict(k=0), "k must be a positive integer"),
        ("relu", dict(l1_coefficient=-1.0), "l1_coefficient must be >= 0"),
        ("jumprelu", dict(l0_coefficient=-0.1), "l0_coefficient must be >= 0"),
        ("jumprelu", dict(jumprelu_init_threshold=-0.1), "jumprelu_init_threshold must be >= 0"),
        ("jumprelu", dict(jumprelu_bandwidth=0.0), "jumprelu_bandwidth must be > 0"),
        ("topk", dict(aux_coefficient=-1.0), "aux_coefficient must be >= 0"),
        ("topk", dict(aux_k=0), "aux_k must be in"),
        ("batchtopk", dict(topk_threshold_lr=0.0), r"topk_threshold_lr must be in \(0, 1\]"),
        ("relu", dict(d_sae=0), "d_sae must be a positive integer"),
        ("relu", dict(lr=0.0), "lr must be > 0"),
        ("relu", dict(adam_betas=(0.9, 1.0)), "adam_betas"),
        ("relu", dict(total_steps=100, lr_warmup_steps=0, lr_decay_steps=101), "must each be at most total_steps"),
        ("relu", dict(compute_dtype="float16"), r"compute_dtype='float16'; valid options"),
        ("relu", dict(kernel="triton"), r"kernel='triton'; valid options: \['fast', 'reference'\]"),
        ("relu", dict(device="gpu0"), "device='gpu0' is not a torch device"),
        ("relu", dict(grad_clip_norm=0.0), "grad_clip_norm must be positive"),
        ("topk", dict(normalize_activations="layer_norm"), "normalize_activations='layer_norm'"),
    ],
)
def test_invalid_configs_name_the_problem(activation, changes, message):
    with pytest.raises(ValueError, match=message):
        config_for(activation, **changes)


def test_every_problem_in_one_error():
    with pytest.raises(ValueError) as info:
        config_for("jumprelu", lr=0.0, adam_eps=0.0, l0_coefficient=-1.0, jumprelu_bandwidth=0.0)
    for part in ("lr must be > 0", "adam_eps must be > 0", "l0_coefficient must be >= 0", "jumprelu_bandwidth"):
        assert part in str(info.value)
