"""Exact-L0 threshold adjustment: after training, move an SAE's thresholds so that its mean L0
on calibration rows hits a target; report L0 and explained variance on held-out rows.

    result = adjust_thresholds(sae, store, target_l0=32, max_rows=100_000)  # train -> calibration
    result = adjust_thresholds(sae, calib_ND, held_out_ND, target_l0=32)    # [n_tokens, d_in] each
    evaluate_sae(model, result.as_sae_lens(), tokens)                       # the CE cost

What moves: JumpReLU's thresholds; BatchTopK's one threshold (``per_feature`` makes it a
JumpReLU SAE, as its SAELens export is anyway). TopK, and ReLU with ``relu_mode="threshold"``,
become JumpReLU SAEs with the same weights (:func:`to_jumprelu`), thresholds from 0: a
threshold drops small activations and keeps the rest, so L0 only falls, at most to the mean
number of positive pre-activations. ReLU with ``relu_mode="bias"`` stays ReLU with b_enc moved
down by t, ``relu(pre - t)``: every activation shrinks by t too, but L0 may also rise.

``global``: one shift for every threshold; latent f fires iff its score ``pre_f - t_f``
(counted where pre_f > 0, for a threshold) exceeds it, so the shift giving exactly ``m =
round(target * n)`` activations on n rows is the midpoint of the m-th and (m+1)-th largest
scores. ``per_feature``: latent f's threshold sits just below its c_f-th largest pre-activation,
``c_f = min(cap_f, r * fired_f)`` (its firing count times one factor r, capped by its positive
pre-activations), ``sum c_f = m``: every rate scales alike. ``auto`` picks ``per_feature`` when
the target is *far*, outside ``[L0 / far_ratio, L0 * far_ratio]`` of the current calibration
L0 (1.5): a shift is in pre-activation units, so a large one silences the latents whose
pre-activations are small and barely touches the others.

Memory: rows are read in chunks of ``chunk_rows``; nothing n_rows x d_sae is held (100k x 4608
would be 460M floats): order statistics come exactly from radix selection
(:func:`saelab.train.order_stats.select_ranked`). A
one-shot iterator is kept ([n, d_in], at most ``max_rows``) since the search reads the rows
several times; tensors, lists, callables (a ``BatchSource``) and stores are re-read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from saelab.evals.accumulators import ReconstructionStats
from saelab.store.reader import ActivationStore
from saelab.train.base import TrainableSAE
from saelab.train.batchtopk import TrainableBatchTopKSAE
from saelab.train.export import to_sae_lens
from saelab.train.jumprelu import JumpReLUConfig, TrainableJumpReLUSAE
from saelab.train.order_stats import select_ranked
from saelab.train.relu import TrainableReLUSAE
from saelab.train.topk import TrainableTopKSAE

if TYPE_CHECKING:
    from sae_lens import SAE

Activations = Tensor | Iterable[Tensor] | Callable[[int], Iterator[Tensor]]
"""``[n_tokens, d_in]`` raw activations: one tensor, batches of them, or ``source(start)``."""
Method = Literal["global", "per_feature"]
FAR_RATIO = 1.5
_CHUNK_ELEMENTS = 1 << 23  # pre-activations computed at once: chunk_rows = this // d_sae


@dataclass(frozen=True, kw_only=True)
class ThresholdResult:
    """An adjusted SAE and what the adjustment did, on calibration and held-out rows."""

    sae: TrainableSAE[Any] = field(repr=False)
    """The adjusted SAE: JumpReLU, BatchTopK (global) or ReLU (``relu_mode="bias"``)."""
    target_l0: float
    method: Method
    calibration_l0: float
    """Mean L0 of the adjusted SAE on the calibration rows (measured, not predicted)."""
    held_out_l0: float
    relative_error: float = field(init=False)
    """``(held_out_l0 - target_l0) / target_l0``."""
    l0_before: float
    """Held-out L0 of the SAE as given."""
    explained_variance_before: float
    explained_variance_after: float
    """Held-out explained variance, before and after; the ``_typical`` pair leaves out massive
    activations (:data:`saelab.evals.MASSIVE_NORM_RATIO`), which dominate a pooled figure."""
    explained_variance_typical_before: float
    explained_variance_typical_after: float
    shift: float | None
    """The global shift in pre-activation units (None for per_feature)."""
    max_l0: float
    """The highest L0 any threshold reaches on the calibration rows."""
    n_calibration: int
    n_held_out: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "relative_error", (self.held_out_l0 - self.target_l0) / self.target_l0)

    def to_dict(self) -> dict[str, Any]:
        """Every field but the SAE."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sae"}

    def as_sae_lens(self, device: str | torch.device | None = None) -> SAE:
        """The adjusted SAE as an in-memory ``sae_lens.SAE``, for ``evaluate_sae``."""
        return to_sae_lens(self.sae, device=device)


def adjust_thresholds(
    sae: TrainableSAE[Any],
    data: ActivationStore | Activations,
    held_out: Activations | None = None,
    *,
    target_l0: float | None,
    method: Literal["auto", "global", "per_feature"] = "auto",
    relu_mode: Literal["threshold", "bias"] = "threshold",
    far_ratio: float = FAR_RATIO,
    hook: str | None = None,
    max_rows: int | None = None,
    chunk_rows: int | None = None,
    seed: int = 0,
) -> ThresholdResult:
    """Thresholds for ``sae`` that give mean L0 ``target_l0`` on the calibration rows, and the L0
    and explained variance they give on held-out rows. ``target_l0=None`` keeps the SAE's own
    calibration L0: a TopK SAE and its JumpReLU conversion then compare at the same L0.

    ``data`` is an activation store (calibration: its train split, shuffled with ``seed``;
    held-out: its held-out split; at ``hook``, default the SAE's) or the calibration
    activations, ``[n_tokens, d_in]``, with ``held_out`` the same way. ``max_rows`` caps the
    rows read from each split (required for a callable source, which may never end; it is
    called with 0 on every pass and must serve the same rows each time, as a trainer's does).
    """
    _check_options(target_l0, method, relu_mode, far_ratio, max_rows, chunk_rows)
    theta, positive_only = _current(sae, relu_mode)
    chunk = chunk_rows or max(1, _CHUNK_ELEMENTS // sae.cfg.d_sae)
    calib, held = _splits(sae, data, held_out, hook, max_rows, chunk, seed)
    next(iter(held))  # an empty held-out split fails now, not after the search
    survey = _survey(sae, calib, positive_only)
    target = survey.l0 if target_l0 is None else target_l0
    _check_target(target, survey)
    m = max(1, round(target * survey.n))
    chosen = _choose(method, target, survey, far_ratio, m)
    search = _per_feature_thresholds if chosen == "per_feature" else _global_thresholds
    new_theta, shift = search(sae, calib, survey, theta, m)
    new = _build(sae, new_theta, chosen, bias=not positive_only)
    before, after = _stats((sae, new), held)
    return ThresholdResult(
        sae=new, target_l0=float(target), method=chosen, calibration_l0=_stats((new,), calib)[0].l0,
        held_out_l0=after.l0, l0_before=before.l0, explained_variance_before=before.explained_variance,
        explained_variance_after=after.explained_variance, shift=shift, max_l0=survey.max_l0,
        explained_variance_typical_before=before.explained_variance_typical,
        explained_variance_typical_after=after.explained_variance_typical,
        n_calibration=survey.n, n_held_out=after.n_tokens,
    )  # fmt: skip


def _per_feature_thresholds(
    sae: TrainableSAE[Any], calib: _Rows, survey: _Survey, theta: Tensor, m: int
) -> tuple[Tensor, None]:
    """Latent f's threshold just below its c_f-th largest counted pre-activation."""
    counts = _scaled_counts(survey.fired, survey.valid, m)
    scored = lambda: _scored(sae, calib, None, survey.positive_only)  # noqa: E731
    values = select_ranked(scored, counts.clamp(min=1), per_column=True)
    below = torch.nextafter(values, torch.full_like(values, -math.inf))  # c_f entries lie above
    # c_f = 0: at the largest, or at the old threshold if higher, so that a silent latent stays as
    # silent on new rows as it was (new rows exceed a calibration maximum now and then)
    new_theta = torch.where(counts > 0, below, torch.maximum(values, theta.to(values))).double()
    return torch.where(survey.valid > 0, new_theta, theta.double()), None  # no entries: keep it


def _global_thresholds(
    sae: TrainableSAE[Any], calib: _Rows, survey: _Survey, theta: Tensor, m: int
) -> tuple[Tensor, float]:
    """Every threshold plus the midpoint of the m-th and (m+1)-th largest scores. With one
    threshold for all, it ranks pre itself (float32: 2 radix passes, not 4 of float64)."""
    uniform, total = bool((theta == theta[0]).all()), int(survey.valid.sum())
    scored = lambda: _scored(sae, calib, None if uniform else theta, survey.positive_only)  # noqa: E731
    ranks = torch.tensor([m, min(m + 1, total)], device=sae.device)
    hi, lo = select_ranked(scored, ranks, per_column=False).double().tolist()
    lo = lo if m < total else hi - max(1.0, abs(hi))  # all fire: any shift below the smallest
    shift = (hi + lo) / 2 - (float(theta[0]) if uniform else 0.0)
    return theta.double() + shift, shift


def to_jumprelu(sae: TrainableSAE[Any], threshold: Float[Tensor, " d_sae"] | float) -> TrainableJumpReLUSAE:
    """A JumpReLU SAE with ``sae``'s weights and config fields and ``threshold`` (>= 0, in
    pre-activation units): ``feats = relu(pre) * (pre > threshold)``, pre computed as ``sae`` does."""
    threshold = torch.as_tensor(threshold, dtype=sae.dtype, device=sae.device).expand(sae.cfg.d_sae)
    if not bool((threshold >= 0).all()):
        raise ValueError("JumpReLU thresholds must be >= 0, as training keeps them")
    names = {f.name for f in fields(JumpReLUConfig)}
    cfg = JumpReLUConfig.from_dict({k: v for k, v in sae.cfg.to_dict().items() if k in names})
    out = TrainableJumpReLUSAE(cfg, sae.device)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "input_scale", "tokens_since_fired"):
            getattr(out, name).copy_(getattr(sae, name))  # a tied decoder is materialised
        out.threshold.copy_(threshold)
    return out


def _current(sae: TrainableSAE[Any], relu_mode: str) -> tuple[Float[Tensor, " d_sae"], bool]:
    """The thresholds now (float32; scores and shifts are relative to them), and whether only
    positive pre-activations count (a threshold) or every one (a bias shift)."""
    if isinstance(sae, TrainableJumpReLUSAE):
        return sae.threshold.detach().float(), True
    if isinstance(sae, TrainableBatchTopKSAE):
        return sae.topk_threshold.float().expand(sae.cfg.d_sae), True
    if isinstance(sae, TrainableTopKSAE | TrainableReLUSAE):
        bias = isinstance(sae, TrainableReLUSAE) and relu_mode == "bias"
        return torch.zeros(sae.cfg.d_sae, device=sae.device), not bias
    raise TypeError(f"adjust_thresholds cannot adjust a {type(sae).__name__}: it moves the thresholds of saelab's "
                    "JumpReLU, BatchTopK (and subclasses), TopK and ReLU training modules only")  # fmt: skip


@torch.no_grad()
def _build(sae: TrainableSAE[Any], theta: Tensor, method: Method, *, bias: bool) -> TrainableSAE[Any]:
    """The adjusted SAE for the new thresholds ``theta`` (float64)."""
    if not bias and not (isinstance(sae, TrainableBatchTopKSAE) and method == "global"):
        return to_jumprelu(sae, theta.clamp(min=0).to(sae.dtype))
    out = type(sae)(sae.cfg, sae.device)
    out.load_state_dict(sae.state_dict())
    if bias:
        out.b_enc.sub_(theta.to(out.b_enc))
    elif isinstance(out, TrainableBatchTopKSAE):
        out.topk_threshold.fill_(float(theta[0].clamp(min=0)))
    return out


def _check_options(target: float | None, method: str, relu_mode: str, far_ratio: float, max_rows: int | None,
                   chunk_rows: int | None) -> None:  # fmt: skip
    if target is not None:
        _check_target(target)
    if method not in ("auto", "global", "per_feature") or relu_mode not in ("threshold", "bias"):
        raise ValueError(f"method must be auto/global/per_feature, relu_mode threshold/bias: got {method}, {relu_mode}")
    if not far_ratio > 1:
        raise ValueError(f"far_ratio must be > 1, got {far_ratio}")
    for name, rows in (("max_rows", max_rows), ("chunk_rows", chunk_rows)):
        if rows is not None and rows < 1:
            raise ValueError(f"{name} must be a positive integer or None, got {rows}")


def _check_target(target: float, survey: _Survey | None = None) -> None:
    if not (math.isfinite(target) and target > 0):
        what = "the SAE's own calibration L0 " if survey is not None else ""
        raise ValueError(f"target_l0 must be a finite number > 0, got {what}{target}")
    if survey is not None and target > survey.max_l0:
        why = f"the SAE has {survey.max_l0:.0f} latents"
        if survey.positive_only:
            why = (f"a threshold only removes activations, and on the calibration rows only {survey.max_l0:.4g} "
                   "pre-activations per token are positive on average (the L0 with every threshold at 0)")  # fmt: skip
        raise ValueError(f"target_l0={target} is out of reach: {why}")


def _choose(method: str, target: float, survey: _Survey, far_ratio: float, m: int) -> Method:
    feasible = survey.valid[survey.fired > 0].sum().item() >= m
    if method == "per_feature" and not feasible:
        raise ValueError(
            f"per_feature cannot reach target_l0={target}: scaling the latents that fire now, each up to all its "
            "positive pre-activations, falls short; use method='global', which also wakes the silent ones"
        )
    if method != "auto":
        return method  # type: ignore[return-value]
    far = not (survey.l0 / far_ratio <= target <= survey.l0 * far_ratio)
    return "per_feature" if far and feasible else "global"


@dataclass(frozen=True)
class _Rows:
    """A split read again and again: ``[<= chunk, d_in]`` chunks, at most ``max_rows`` rows."""

    data: Activations
    name: str
    sae: TrainableSAE[Any]
    max_rows: int | None
    chunk: int

    def __iter__(self) -> Iterator[Float[Tensor, "chunk d_in"]]:
        n, d_in, data = 0, self.sae.cfg.d_in, self.data
        for batch in [data] if isinstance(data, Tensor) else data(0) if callable(data) else data:
            if batch.ndim != 2 or batch.shape[1] != d_in:
                raise ValueError(f"{self.name} activations must be [n_tokens, d_in={d_in}], got {tuple(batch.shape)}")
            batch = batch if self.max_rows is None else batch[: self.max_rows - n]
            for piece in batch.split(self.chunk) if batch.shape[0] else ():
                yield piece.to(self.sae.device, self.sae.dtype)
            n += batch.shape[0]
            if self.max_rows is not None and n >= self.max_rows:
                return
        if n == 0:
            raise ValueError(f"The {self.name} split is empty: it has no activation rows")


def _splits(sae: TrainableSAE[Any], data: ActivationStore | Activations, held_out: Activations | None,
            hook: str | None, max_rows: int | None, chunk: int, seed: int) -> tuple[_Rows, _Rows]:  # fmt: skip
    from_store = isinstance(data, ActivationStore)  # its splits end: one epoch each
    if isinstance(data, ActivationStore):
        store, at = data, hook or sae.cfg.hook_name
        if store.d_in(at) != sae.cfg.d_in:
            raise ValueError(f"The store's {at} has width {store.d_in(at)}, the SAE's d_in is {sae.cfg.d_in}")
        # An empty split fails in iter_batches, which says so.
        data = lambda _: store.iter_batches(at, chunk, seed=seed, device=sae.device)  # noqa: E731
        held_out = lambda _: store.iter_batches(at, chunk, split="held_out", shuffle=False, device=sae.device)  # noqa: E731
    elif held_out is None:
        raise ValueError("Pass held_out activations (or an ActivationStore, whose held-out split is used)")
    out = []
    for rows, name in ((data, "calibration"), (held_out, "held-out")):
        if not isinstance(rows, Tensor) and callable(rows) and max_rows is None and not from_store:
            raise ValueError(f"The {name} source is a callable, which may never end: set max_rows")
        if isinstance(rows, Iterator):  # read once and kept: the search needs several passes
            rows = list(_Rows(rows, name, sae, max_rows, chunk))
        out.append(_Rows(rows, name, sae, max_rows, chunk))
    return out[0], out[1]


@dataclass(frozen=True)
class _Survey:
    """Calibration rows: how many, on how many each latent fires now (``fired``), and on how
    many a threshold could let it through (``valid``: pre > 0, or every row for a bias)."""

    n: int
    fired: Int[Tensor, " d_sae"]
    valid: Int[Tensor, " d_sae"]
    positive_only: bool
    l0: float = field(init=False)
    max_l0: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "l0", self.fired.sum().item() / self.n)
        object.__setattr__(self, "max_l0", self.valid.sum().item() / self.n)


def _pre(sae: TrainableSAE[Any], x_ND: Tensor) -> Float[Tensor, "n d_sae"]:
    """Pre-activations exactly as ``sae.encode`` computes them."""
    return (x_ND * sae.input_scale - sae.b_dec) @ sae.W_enc + sae.b_enc


@torch.no_grad()
def _survey(sae: TrainableSAE[Any], rows: _Rows, positive_only: bool) -> _Survey:
    n, fired = 0, torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=sae.device)
    valid = torch.zeros_like(fired)
    for x in rows:
        pre = _pre(sae, x)
        if not bool(torch.isfinite(pre).all()):
            raise ValueError("The calibration rows give non-finite pre-activations")
        fired += (sae._activate(pre) != 0).sum(0)
        valid += (pre > 0).sum(0) if positive_only else x.shape[0]
        n += x.shape[0]
    return _Survey(n, fired, valid, positive_only)


def _scored(
    sae: TrainableSAE[Any], rows: _Rows, theta: Tensor | None, positive_only: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """Per chunk: the scores and which entries count. Scores are ``pre`` itself (exactly as
    encode compares it), or ``pre - theta`` in float64: in float32 a large threshold would round
    away the differences between the small pre-activations near it."""
    for x in rows:
        pre = _pre(sae, x)
        counted = pre > 0 if positive_only else torch.ones_like(pre, dtype=torch.bool)
        yield (pre if theta is None else pre.double() - theta.double()), counted


def _scaled_counts(fired: Tensor, cap: Tensor, m: int) -> Int[Tensor, " d_sae"]:
    """``c_f = min(cap_f, r * fired_f)`` with r found by bisection so the sum is m, rounded by
    largest remainders (which keeps the sum at exactly m)."""
    fired64, cap64 = fired.double(), cap.double()
    lo, hi = 0.0, float((cap64 / fired64.clamp(min=1)).max()) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(torch.minimum(cap64, mid * fired64).sum()) < m else (lo, mid)
    want = torch.minimum(cap64, hi * fired64)
    counts = want.floor().long()
    short = m - int(counts.sum())
    if short > 0:
        counts[(want - counts).argsort(descending=True)[:short]] += 1
    return counts


@torch.no_grad()
def _stats(saes: tuple[TrainableSAE[Any], ...], rows: _Rows) -> list[ReconstructionStats]:
    """L0 and explained variance of each SAE on ``rows``, in one pass."""
    stats = [ReconstructionStats(sae.cfg.d_sae) for sae in saes]
    for x in rows:
        for sae, stat in zip(saes, stats, strict=True):
            feats = sae.encode(x)
            stat.add(x, feats, sae.decode(feats))
    return stats
