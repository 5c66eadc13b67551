"""``build_dashboards``: one SAE's dashboards from one streamed pass.

The pass is the autointerp examples pass (:func:`saelab.autointerp.collect.run_pass`), with
an activation histogram, co-activation counts and the reconstruction error riding along as
observers; it is resumable and its examples are saved where ``collect_examples`` finds them,
so explaining the same features afterwards reads no activation again. Then come the
data-free parts (logit tables, decoder neighbours) and the joins (explanations, specialists,
matches at other hooks, the feature map). The finished dashboard is cached as gzipped JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab._util.keys import model_identity, sae_identity, stable_hash
from saelab._util.paths import cache_dir
from saelab.analysis._checks import check_feature_ids
from saelab.autointerp.collect import finish_examples, run_pass
from saelab.autointerp.decompositions import sae_directions
from saelab.autointerp.example_set import ExampleSet
from saelab.autointerp.run import AutointerpConfig, run_autointerp
from saelab.autointerp.scoring import LLM_SCORERS
from saelab.autointerp.sources import ActivationSource, StoreSource, TextSource
from saelab.dashboards.accumulators import ActivationHistogram, Coactivation, Reconstruction
from saelab.dashboards.assemble import FeatureParts, assemble_features
from saelab.dashboards.config import DashboardConfig
from saelab.dashboards.data import SaeDashboard, SaeInfo
from saelab.dashboards.joins import explanations_by_feature, map_points, matches_by_feature, specialists_by_feature
from saelab.dashboards.parts import decoder_neighbours, logit_parts
from saelab.dashboards.summary import summarise
from saelab.saes import sae_hook_name

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when the assembly changes what a build produces


def build_dashboards(
    model: HookedTransformer,
    sae: SAE,
    source: ActivationSource | Sequence[str],
    *,
    features: Sequence[int] | None = None,
    config: DashboardConfig | None = None,
    explanations: pd.DataFrame | None = None,
    autointerp: AutointerpConfig | None = None,
    specialists: pd.DataFrame | None = None,
    other_saes: Mapping[str, SAE] | None = None,
    feature_map: bool = True,
    metrics: Mapping[str, Any] | None = None,
    release: str = "",
    neuronpedia_id: str | None = None,
    cache: bool = True,
    progress: bool = True,
) -> SaeDashboard:
    """Dashboards of ``features`` (None: all) of ``sae``.

    ``source``: a :class:`~saelab.autointerp.StoreSource` at the SAE's hook (no model forward)
    or a list of texts (one forward, up to the hook). ``explanations``: the frame of
    :func:`saelab.autointerp.run_autointerp`; ``autointerp``: also explain and score every
    feature from this very pass's examples (LLM-free explainers only: no backend is passed;
    the records are cached beside the dashboard); ``specialists``: a :func:`saelab.specialists`
    table; ``other_saes``: hook -> SAE of the same model, for each feature's best match there;
    ``metrics``: measured numbers to add to the summary (e.g. the bundled suite's
    ``ce_loss_recovered``). Whatever is not given stays empty in the dashboard.
    """
    cfg = config or DashboardConfig()
    if not isinstance(cfg, DashboardConfig):
        raise TypeError(f"config must be a DashboardConfig, got {type(cfg).__name__}")
    hook = sae_hook_name(sae)
    src = _source(model, sae, hook, source)
    d_sae = int(sae.cfg.d_sae)
    selected = list(range(d_sae)) if features is None else check_feature_ids(features, d_sae)
    others = dict(other_saes or {})
    others.pop(hook, None)
    key = stable_hash(["dashboards", CACHE_VERSION, src.key, sae_identity(sae), selected, cfg.to_dict(),
                       _frame_digest(explanations), autointerp.to_dict() if autointerp else None,
                       _frame_digest(specialists),
                       sorted((h, sae_identity(s)) for h, s in others.items()), feature_map, dict(metrics or {}),
                       release, neuronpedia_id])  # fmt: skip
    path = cache_dir() / "dashboards" / f"{hook}-{key}.json.gz"
    if cache and path.is_file():
        return SaeDashboard.load(path)
    started = time.perf_counter()
    records = path.with_name(f"{hook}-{key}.autointerp.jsonl") if autointerp is not None else None
    dashboard = _build(model, sae, src, selected, cfg, others, explanations, (autointerp, records), specialists,
                       feature_map, metrics, release, neuronpedia_id, cache, progress)  # fmt: skip
    dashboard.seconds = time.perf_counter() - started
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        dashboard.save(path)
    return dashboard


def _build(model: HookedTransformer, sae: SAE, src: ActivationSource, selected: list[int], cfg: DashboardConfig,
           others: dict[str, SAE], explanations: pd.DataFrame | None,
           autointerp: tuple[AutointerpConfig | None, Path | None], specialists: pd.DataFrame | None,
           feature_map: bool, metrics: Mapping[str, Any] | None, release: str, neuronpedia_id: str | None,
           cache: bool, progress: bool) -> SaeDashboard:  # fmt: skip
    d_sae = int(sae.cfg.d_sae)
    dec = sae_directions(sae)
    ex_cfg = cfg.examples_config()
    histogram, coact = ActivationHistogram(selected), Coactivation(selected, d_sae)
    recon = Reconstruction(sae)
    began = time.perf_counter()
    state = run_pass(src, dec, model, selected, ex_cfg, observers=[histogram, coact, recon], encode_all=True,
                     cache=cache, progress=progress)  # fmt: skip
    passed = time.perf_counter()
    examples = finish_examples(state, src, dec, model, selected, ex_cfg, seconds=passed - began, cache=cache)
    explanations = _explain(examples, explanations, *autointerp, progress)
    assembled = time.perf_counter()
    logits = logit_parts(model, sae, selected, top=cfg.n_logits, n_bins=cfg.n_logit_histogram_bins)
    points, map_method = map_points(sae, selected) if feature_map else ({}, None)
    parts = FeatureParts(
        logits=logits, neighbours=decoder_neighbours(sae, selected, cfg.n_neighbours),
        explanations=explanations_by_feature(explanations, d_sae),
        specialists=specialists_by_feature(specialists, d_sae),
        matches=matches_by_feature(sae, others, selected) if others else {}, points=points,
    )  # fmt: skip
    joined = time.perf_counter()
    features = assemble_features(state, src, model, selected, cfg, histogram, coact, parts)
    log.info("dashboards of %s: pass %.1f s, autointerp examples and explanations %.1f s, logits, neighbours and "
             "joins %.1f s, features %.1f s", sae_hook_name(sae), passed - began, assembled - passed,
             joined - assembled, time.perf_counter() - joined)  # fmt: skip
    info = SaeInfo(model=str(model.cfg.model_name), hook=sae_hook_name(sae), release=release, sae_id=sae_hook_name(sae),
                   d_sae=d_sae, d_in=int(sae.cfg.d_in), architecture=str(sae.cfg.architecture()),
                   source=describe_source(src), n_tokens=state.n_tokens, neuronpedia_id=neuronpedia_id,
                   other_hooks=tuple(others))  # fmt: skip
    summary = summarise(features, coact, recon, state.n_tokens, d_sae, metrics, specialists, explanations)
    return SaeDashboard(info, cfg, summary, features, map_method)


def _source(model: HookedTransformer, sae: SAE, hook: str,
            source: ActivationSource | Sequence[str]) -> ActivationSource:  # fmt: skip
    """The pass's source, checked against the SAE: same model, same hook, same width."""
    if isinstance(source, str):
        raise TypeError("source must be a list of texts or an activation source, not one string; wrap it in a list")
    if isinstance(source, StoreSource):
        store_model = source.store.manifest.get("model", {})
        if store_model.get("identity") not in (None, model_identity(model)):
            raise ValueError(f"the store {source.store.path} was built from another model "
                             f"({store_model.get('name')!r}) than {model.cfg.model_name!r}; build a store with "
                             "this model (saelab.train.activation_store)")  # fmt: skip
        if source.hook != hook:
            raise ValueError(f"the store source reads {source.hook!r} but the SAE reads {hook!r}; pass "
                             f"StoreSource(store, {hook!r}) (the store holds {list(source.store.hooks)})")  # fmt: skip
        if source.store.d_in(hook) != int(sae.cfg.d_in):
            raise ValueError(f"the store's {hook} is {source.store.d_in(hook)} wide, the SAE reads {sae.cfg.d_in}")
        return source
    if isinstance(source, TextSource):
        if source.hook != hook:
            raise ValueError(f"the text source reads {source.hook!r} but the SAE reads {hook!r}")
        return source
    if hasattr(source, "chunk") and hasattr(source, "key"):
        return source  # type: ignore[return-value]  # another ActivationSource: its own checks apply
    texts = list(cast(Sequence[str], source))
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("source must be a StoreSource or a non-empty list of texts")
    return TextSource(model, texts, hook)


def _explain(examples: ExampleSet, given: pd.DataFrame | None, config: AutointerpConfig | None, path: Path | None,
             progress: bool) -> pd.DataFrame | None:  # fmt: skip
    """The given explanation records, plus those made now from the pass's examples."""
    if config is None or path is None:
        return given
    if any(e == "llm" for e in config.explainers) or any(s in LLM_SCORERS for s in config.scorers):
        raise ValueError("build_dashboards runs LLM-free explainers and scorers only; explain with an LLM through "
                         "saelab.autointerp.run_autointerp(...) and pass its frame as explanations=")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    made = run_autointerp(examples, path, config=config, progress=progress)
    return made if given is None else pd.concat([given, made], ignore_index=True)


def describe_source(src: ActivationSource) -> str:
    """What the pass read, for a reader: the store and split, or how many texts; and the key."""
    if isinstance(src, StoreSource):
        return f"store {src.store.path.name}, {src.split} split ({src.key})"
    if isinstance(src, TextSource):
        return f"{len(src.texts)} texts ({src.key})"
    return f"{type(src).__name__} ({src.key})"


def _frame_digest(frame: pd.DataFrame | None) -> str | None:
    return None if frame is None else stable_hash(frame.to_json(orient="split", default_handler=str))
