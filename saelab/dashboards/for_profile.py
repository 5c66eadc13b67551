"""Dashboards for a whole profile: every SAE at the chosen hooks, read from one activation
store of the offline corpus mix (one model pass for all hooks, cached), with the LLM-free
explanations scored beside shuffled controls, the category specialists, the matches between
hooks and the feature map joined in; then the reports and the static site.

What ``make dashboards`` and ``python -m saelab.dashboards`` run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saelab._util.config import JsonConfig
from saelab.autointerp.run import AutointerpConfig
from saelab.autointerp.sources import StoreSource
from saelab.dashboards.build import build_dashboards
from saelab.dashboards.config import DashboardConfig
from saelab.dashboards.data import SaeDashboard
from saelab.dashboards.reports import export_reports
from saelab.dashboards.site.write import write_site
from saelab.profiles import Profile, get
from saelab.saes import BUNDLED_RELEASES, bundled_suite_dir
from saelab.store.config import SPLITS, Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileDashboardsConfig(JsonConfig):
    """Which SAEs, on what text, with which joins."""

    profile: str = "offline"
    hooks: tuple[str, ...] = ()
    """Hooks whose SAEs get dashboards (empty: all of the profile's)."""
    store_tokens: int = 100_000
    """Tokens of the offline corpus mix in the activation store the pass reads."""
    split: Split = "all"
    explain: bool = True
    """Explain every feature (LLM-free ``top_tokens``) and score it by simulation beside the shuffled control."""
    specialists: bool = True
    """Join each feature's category specialist result (the labelled texts, one model pass for all hooks)."""
    feature_map: bool = True
    n_features: int | None = None
    """Only the first this many features of each SAE (None: all)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hooks", tuple(self.hooks))
        problems = []
        if self.split not in SPLITS:
            problems.append(f"split must be one of {list(SPLITS)}, got {self.split!r}")
        if isinstance(self.store_tokens, bool) or not isinstance(self.store_tokens, int) or self.store_tokens < 1000:
            problems.append(f"store_tokens must be an integer >= 1000, got {self.store_tokens!r}")
        if self.n_features is not None and (not isinstance(self.n_features, int) or self.n_features < 1):
            problems.append(f"n_features must be None or a positive integer, got {self.n_features!r}")
        self.raise_problems(problems)


def chosen_hooks(profile: Profile, hooks: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [h for h in hooks if h not in profile.hooks]
    if unknown:
        raise ValueError(f"hooks {unknown} are not in profile {profile.name!r}; valid: {list(profile.hooks)}")
    return hooks or profile.hooks


def bundled_metrics(profile: Profile, hook: str) -> dict[str, Any]:
    """The bundled suite's measured metrics of the SAE at ``hook`` (CE loss recovered among them)."""
    if profile.sae_release not in BUNDLED_RELEASES:
        return {}
    path = bundled_suite_dir(profile.sae_release) / "metrics.json"
    return dict(json.loads(path.read_text()).get(hook, {})) if path.is_file() else {}


def profile_dashboards(config: ProfileDashboardsConfig, site: str | Path | None = None,
                       reports: str | Path | None = None, *, progress: bool = True) -> list[SaeDashboard]:  # fmt: skip
    """Build (or read from the cache) the dashboards of ``config``'s SAEs; write the static site to
    ``site`` and the reports to ``reports`` when given."""
    import saelab  # the public face: load_model, train, analysis, labelled_texts

    profile = get(config.profile)
    hooks = chosen_hooks(profile, config.hooks)
    model = profile.load_model()
    saes = {hook: profile.load_sae(hook) for hook in profile.hooks}
    started = time.perf_counter()
    store = saelab.train.activation_store(model, list(hooks), n_tokens=config.store_tokens, progress=progress)
    tables = _specialists(model, {h: saes[h] for h in hooks}) if config.specialists else {}
    features = list(range(config.n_features)) if config.n_features is not None else None
    explain = AutointerpConfig(explainers=("top_tokens",), scorers=("simulation",)) if config.explain else None
    dashes = []
    for hook in hooks:
        dashes.append(build_dashboards(
            model, saes[hook], StoreSource(store, hook, config.split), features=features, config=DashboardConfig(),
            autointerp=explain,
            specialists=tables.get(hook), other_saes=saes, feature_map=config.feature_map,
            metrics=bundled_metrics(profile, hook), release=profile.sae_release,
            neuronpedia_id=profile.neuronpedia_id(hook), progress=progress,
        ))  # fmt: skip
    log.info("dashboards of %d SAEs in %.1f s", len(dashes), time.perf_counter() - started)
    if reports is not None:
        export_reports(dashes, reports)
    if site is not None:
        write_site(dashes, site, title=f"saelab dashboards: {profile.name} profile ({model.cfg.model_name})")
    return dashes


def _specialists(model: Any, saes: dict[str, Any]) -> dict[str, Any]:
    """Each SAE's specialists table on the labelled texts (per-token features cached and shared
    with notebooks 02 and 03)."""
    import saelab

    texts, labels, _ = saelab.labelled_texts()
    per_token = saelab.cached_per_token(model, saes, texts)
    return {hook: saelab.analysis.specialists(per_token[hook].pool("mean"), labels) for hook in saes}
