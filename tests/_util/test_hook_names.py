"""saelab._util.hook_names: how deep the model must run to reach a hook."""

import pytest

from saelab._util.hook_names import stop_layer_for_hook


@pytest.mark.parametrize(
    "hook, stop",
    [
        ("blocks.0.hook_resid_pre", 0),
        ("blocks.8.hook_resid_pre", 8),
        ("blocks.8.hook_resid_post", 9),
        ("blocks.8.hook_mlp_out", 9),
        ("blocks.8.attn.hook_z", 9),
        ("ln_final.hook_normalized", None),
    ],
)
def test_stop_layer_for_hook(hook, stop):
    assert stop_layer_for_hook(hook) == stop
