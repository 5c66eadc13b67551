"""The architecture registry: each name leads to its file, whose pieces agree with each other."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from saelab.train import TrainConfig, make_sae
from saelab.train.base import TrainableSAE
from saelab.train.registry import ARCHITECTURES, architecture_names, get_architecture

from ._helpers import tiny


def test_the_five_architectures_are_registered():
    assert architecture_names() == ("relu", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk")


@pytest.mark.parametrize("name", architecture_names())
def test_each_entry_is_consistent(name):
    arch = get_architecture(name)
    assert arch.name == name == arch.config.activation
    assert issubclass(arch.config, TrainConfig) and issubclass(arch.sae, TrainableSAE)
    assert arch.sae.__module__ == arch.config.__module__ == ARCHITECTURES[name]  # one file holds them
    assert arch.calibration.field in {f.name for f in dataclasses.fields(arch.config)}
    assert arch.sae.sae_lens_architecture in ("standard", "jumprelu", "topk")
    sae = make_sae(tiny(name))
    assert type(sae) is arch.sae and sae.cfg.activation == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown SAE architecture 'sigmoid'; valid: \['relu', 'jumprelu'"):
        get_architecture("sigmoid")


def test_naming_the_architectures_imports_none_of_them():
    code = (
        "import sys; from saelab.train.registry import architecture_names; architecture_names(); "
        "import saelab.train.__main__; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not [m for m in sys.modules if m.startswith('saelab.train.') and m.endswith('relu')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
