"""What a dashboard holds: one :class:`FeatureDashboard` per feature and one :class:`SaeDashboard`
per SAE. Plain frozen dataclasses of numbers and strings, so reports and the site read them
without torch, and a dashboard is saved and loaded as gzipped JSON.

A window (:class:`~saelab.autointerp.feature_examples.Context`) is ``window`` tokens of one
corpus sequence with the feature's activation on each token; ``source = (sequence, start)``
names it. Histograms are ``edges`` (one more than ``counts``) and ``counts``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from saelab._util.atomic import atomic_write_bytes
from saelab.autointerp.feature_examples import Context
from saelab.dashboards.config import DashboardConfig

FORMAT_VERSION = 1


@dataclass(frozen=True)
class QuantileGroup:
    """Activating windows whose peak lies in one quantile bin of the feature's activating windows."""

    low: float
    high: float
    """Range of the windows' peak activations in this bin."""
    share: float
    """Share of the feature's activating windows that fall in this bin."""
    examples: tuple[Context, ...]


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.counts) + 1 and self.counts:
            raise ValueError(f"A histogram needs one edge more than counts; got {len(self.edges)} and "
                             f"{len(self.counts)}")  # fmt: skip


@dataclass(frozen=True)
class TokenValue:
    """A vocabulary token and a value (a logit effect)."""

    token: str
    token_id: int
    value: float


@dataclass(frozen=True)
class Neighbour:
    feature: int
    value: float
    """Decoder cosine, or the Jaccard index of the tokens where both fire."""
    share: float | None = None
    """Co-activation only: share of this feature's firing tokens where the neighbour fires too."""


@dataclass(frozen=True)
class Match:
    """The best match of this feature among the features of the SAE at another hook."""

    hook: str
    feature: int
    similarity: float
    good: bool
    """Above the matching's null threshold (:mod:`saelab.evolution.matching`)."""


@dataclass(frozen=True)
class ExplanationScore:
    """One explainer's explanation of the feature with each score beside its shuffled control."""

    explainer: str
    text: str
    scores: dict[str, float]
    """metric -> score of this explanation."""
    shuffled: dict[str, float]
    """metric -> score of another feature's explanation on the same windows (the control)."""


@dataclass(frozen=True)
class SpecialistHit:
    """A category this feature prefers (a row of :func:`saelab.specialists`)."""

    category: str
    auroc: float
    q_value: float
    is_specialist: bool


@dataclass(frozen=True)
class FeatureDashboard:
    feature: int
    density: float
    """Share of the source's tokens on which the feature fires."""
    n_fired: int
    """Tokens on which it fired."""
    max_activation: float
    mean_activation: float
    """Mean activation over the tokens where it fires."""
    steering_unit: float
    """Mean peak of its ``steering_top`` strongest windows: what steering strength 1.0 adds."""
    top: tuple[Context, ...] = ()
    quantiles: tuple[QuantileGroup, ...] = ()
    histogram: Histogram = Histogram((), ())
    """Activations over the tokens where it fires."""
    logit_histogram: Histogram = Histogram((), ())
    """Direct logit effect over the whole vocabulary."""
    promoted: tuple[TokenValue, ...] = ()
    """Tokens whose logits the decoder direction raises most (``W_dec[f] @ W_U``)."""
    suppressed: tuple[TokenValue, ...] = ()
    decoder_neighbours: tuple[Neighbour, ...] = ()
    coactivating: tuple[Neighbour, ...] = ()
    explanations: tuple[ExplanationScore, ...] = ()
    """Empty when the SAE has no explanations (never missing)."""
    specialist: tuple[SpecialistHit, ...] = ()
    matches: tuple[Match, ...] = ()
    map_xy: tuple[float, float] | None = None

    @property
    def fires(self) -> bool:
        return self.n_fired > 0

    def peak_tokens(self, n: int = 5) -> list[str]:
        """The tokens at the peak of its top windows, most frequent first."""
        counts: dict[str, int] = {}
        for ctx in self.top:
            if ctx.acts:
                token = ctx.tokens[max(range(len(ctx.acts)), key=ctx.acts.__getitem__)]
                counts[token] = counts.get(token, 0) + 1
        return [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: that deep-copies every token of every window, and
        # took most of a whole SAE's build time.
        plain = (TokenValue, Neighbour, Match, ExplanationScore, SpecialistHit)
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if name == "top":
                value = [c.to_dict() for c in value]
            elif name == "quantiles":
                value = [{"low": q.low, "high": q.high, "share": q.share, "examples": [c.to_dict() for c in q.examples]}
                         for q in value]  # fmt: skip
            elif isinstance(value, Histogram):
                value = {"edges": list(value.edges), "counts": list(value.counts)}
            elif isinstance(value, tuple) and value and isinstance(value[0], plain):
                value = [dict(vars(v)) for v in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDashboard:
        d = dict(data)
        d["top"] = tuple(Context.from_dict(c) for c in d["top"])
        d["quantiles"] = tuple(
            QuantileGroup(q["low"], q["high"], q["share"], tuple(Context.from_dict(c) for c in q["examples"]))
            for q in d["quantiles"]
        )
        for name in ("histogram", "logit_histogram"):
            d[name] = Histogram(tuple(d[name]["edges"]), tuple(d[name]["counts"]))
        for name in ("promoted", "suppressed"):
            d[name] = tuple(TokenValue(**t) for t in d[name])
        for name in ("decoder_neighbours", "coactivating"):
            d[name] = tuple(Neighbour(**n) for n in d[name])
        d["explanations"] = tuple(ExplanationScore(**e) for e in d["explanations"])
        d["specialist"] = tuple(SpecialistHit(**s) for s in d["specialist"])
        d["matches"] = tuple(Match(**m) for m in d["matches"])
        d["map_xy"] = tuple(d["map_xy"]) if d["map_xy"] is not None else None
        return cls(**d)


_FIELDS = tuple(f.name for f in fields(FeatureDashboard))


@dataclass(frozen=True)
class SaeInfo:
    """Which SAE a dashboard describes, and on what text."""

    model: str
    hook: str
    release: str
    """The SAE's release or bundled suite name ("" for an SAE from a folder)."""
    sae_id: str
    d_sae: int
    d_in: int
    architecture: str
    source: str
    """What the pass read: "store <key> held_out" or "texts <digest>"."""
    n_tokens: int
    neuronpedia_id: str | None = None
    """``model/source`` on Neuronpedia, where the SAE is published there."""
    other_hooks: tuple[str, ...] = ()
    """The hooks whose SAEs the matches point to (same profile)."""

    @property
    def slug(self) -> str:
        """A file-name-safe name of the SAE, unique within a profile."""
        return self.hook.replace("/", "_")


@dataclass
class SaeDashboard:
    """Every requested feature's dashboard for one SAE, and the SAE's summary."""

    info: SaeInfo
    config: DashboardConfig
    summary: dict[str, Any]
    """Metrics (``l0``, ``explained_variance``, ``ce_loss_recovered``, ``dead_fraction``,
    ``dense_fraction``, ...), ``specialists`` (table rows) and ``explanation_scores`` (rows of
    :func:`saelab.autointerp.score_summary`); a metric not measured is None."""
    features: dict[int, FeatureDashboard] = field(default_factory=dict)
    map_method: str | None = None
    seconds: float = 0.0
    """Wall time of the build that made it (0 when read from the cache)."""

    def __getitem__(self, feature: int) -> FeatureDashboard:
        try:
            return self.features[feature]
        except KeyError:
            raise KeyError(f"Feature {feature} is not in this dashboard; it holds {len(self.features)} "
                           f"features of {self.info.d_sae}.") from None  # fmt: skip

    def __len__(self) -> int:
        return len(self.features)

    def frame(self) -> pd.DataFrame:
        """One row per feature: what the site's index table shows."""
        rows = []
        for f in self.features.values():
            best = max(f.specialist, key=lambda s: s.auroc, default=None)
            first = f.explanations[0] if f.explanations else None
            metric = next(iter(first.scores), None) if first else None
            rows.append({
                "feature": f.feature, "density": f.density, "max_activation": f.max_activation,
                "top_tokens": f.peak_tokens(), "explanation": first.text if first else "",
                "score": first.scores.get(metric) if first and metric else None,
                "shuffled_score": first.shuffled.get(metric) if first and metric else None,
                "category": best.category if best and best.is_specialist else "",
            })  # fmt: skip
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "info": asdict(self.info), "config": self.config.to_dict(),
                "summary": self.summary, "map_method": self.map_method,
                "features": [f.to_dict() for f in self.features.values()]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeDashboard:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"dashboard format {data.get('format')!r} is not {FORMAT_VERSION}: rebuild it")
        info = dict(data["info"])
        info["other_hooks"] = tuple(info.get("other_hooks", ()))
        features = [FeatureDashboard.from_dict(f) for f in data["features"]]
        return cls(SaeInfo(**info), DashboardConfig.from_dict(data["config"]), data["summary"],
                   {f.feature: f for f in features}, data.get("map_method"))  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Gzipped JSON, written atomically."""
        payload = json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()
        atomic_write_bytes(Path(path), gzip.compress(payload, compresslevel=1, mtime=0))

    @classmethod
    def load(cls, path: str | Path) -> SaeDashboard:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))
