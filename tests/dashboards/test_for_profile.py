"""The profile run's settings: bad values and unknown hooks are named before anything loads."""

from __future__ import annotations

import pytest

from saelab.dashboards.__main__ import main
from saelab.dashboards.for_profile import ProfileDashboardsConfig, bundled_metrics, chosen_hooks
from saelab.profiles import get


def test_hooks_default_to_the_profile_and_unknown_ones_are_named():
    offline = get("offline")
    assert chosen_hooks(offline, ()) == offline.hooks
    assert chosen_hooks(offline, ("blocks.15.hook_resid_pre",)) == ("blocks.15.hook_resid_pre",)
    with pytest.raises(ValueError, match=r"'blocks.3.hook_resid_pre'\] are not in profile 'offline'"):
        chosen_hooks(offline, ("blocks.3.hook_resid_pre",))


def test_bad_settings_are_listed_together():
    with pytest.raises(ValueError, match=r"split must be one of .*store_tokens must be .*n_features must be"):
        ProfileDashboardsConfig(split="test", store_tokens=10, n_features=0)  # type: ignore[arg-type]
    assert ProfileDashboardsConfig.from_json(ProfileDashboardsConfig(hooks=("a",)).to_json()).hooks == ("a",)


def test_the_bundled_suite_brings_its_measured_metrics():
    offline = get("offline")
    metrics = bundled_metrics(offline, offline.default_hook)
    assert 0 < metrics["ce_loss_recovered"] <= 1 and metrics["hook"] == offline.default_hook


def test_the_command_line_refuses_an_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="Unknown profile 'nope'"):
        main(["--profile", "nope", "--out", str(tmp_path / "site")])
