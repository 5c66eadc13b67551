"""The records of a report folder, declared once with pydantic: what ``export_reports``
validates before it writes and what ``load_reports`` reads back.

The names follow Neuronpedia's bulk-import layout. Its importer
(``apps/webapp/app/api/admin/import/route.ts`` and ``lib/db/import.ts`` in
hijohnnylin/neuronpedia) reads ``<modelId>/<sourceId>/{features,activations,explanations}/
batch-N.jsonl.gz`` and inserts each line into the table of the same columns (``Neuron``,
``Activation``, ``Explanation``): it takes the column list from the *first* line's keys and
ignores keys that are not columns, so every record here carries the same keys (a validated
model dumps all of them) and saelab's own numbers ride along in a ``saelab`` block. Batch
``N`` holds features ``[1024 N, 1024 (N + 1))``, as Neuronpedia's ``export-data.py`` writes.

Required, because the database columns are NOT NULL without a default (prisma/migrations):

* feature (``Neuron``): ``modelId``, ``layer`` (the source id, e.g. ``20-res-saelab``),
  ``index`` (a string);
* activation: ``id`` (Prisma's ``cuid()`` default lives in the client, not the database),
  ``modelId``, ``layer``, ``index``, ``tokens``, ``values``, ``maxValue``,
  ``maxValueTokenIndex``, ``minValue``, ``creatorId`` (a foreign key to ``User``);
* explanation: ``id``, ``modelId``, ``layer``, ``index``, ``description``, ``authorId`` (to ``User``).

``creatorId``/``authorId`` is the user every Neuronpedia instance seeds
(``prisma/seed.ts``) and its own exports use. Ids are derived from the record's place
(source, feature, group, rank), so the same dashboard gives the same bytes.

Optional columns written empty ([] or null), and why:

* ``vector``/``hasVector``/``vectorLabel``/``vectorDefaultSteerStrength``/``hookName``: the
  decoder row (d_in floats per feature) would dominate the reports; the SAE's weights carry it.
* ``neuron_alignment_*``, ``correlated_neurons_*``, ``decoder_weights_dist``: not computed.
* ``correlated_features_*``: saelab's co-activation is a Jaccard index and a share, not
  Pearson and L1; it is in ``saelab.coactivating`` instead of under a wrong name.
* ``umap_*`` of a feature: filled only when the dashboard's map is a UMAP (``map_method``);
  ``umap_cluster`` and ``umap_log_feature_sparsity`` are not computed.
* activation ``dataSource`` (Neuronpedia reserves "top"/"bottom" for other models),
  ``dfaValues``/``dfaMaxValue``/``dfaTargetIndex`` (attention attribution, not computed).
* explanation ``typeName``/``explanationModelName``: foreign keys to Neuronpedia's own
  explainer tables, where saelab's explainers are not listed (``saelab.explainer`` names
  it); ``embedding`` and ``umap_*``: not computed. Scores live in another table that the
  bulk import does not read, so they are in ``saelab.scores`` beside ``saelab.shuffled``.

Activation windows follow SAEDashboard's convention: the top group has ``binMin`` -1,
``binContains`` -1 and ``binMax`` the feature's maximum; a quantile group has its range in
``binMin``/``binMax`` and its share of the feature's activating windows in ``binContains``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from saelab.dashboards.config import DashboardConfig
from saelab.dashboards.data import Match, Neighbour, SaeInfo, SpecialistHit

BATCH_SIZE = 1024
"""Features per batch file, as in Neuronpedia's exports."""
CREATOR_ID = "clkht01d40000jv08hvalcvly"
"""The user every Neuronpedia instance seeds; its exports credit records to it."""
KINDS = ("features", "activations", "explanations")
SUMMARY_FORMAT = 1


class _Record(BaseModel):
    # strict: a value of the wrong type is an error, never silently converted.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FeatureExtras(_Record):
    n_fired: int
    mean_activation: float
    steering_unit: float
    top_tokens: list[str]
    """Tokens at the peak of the top windows, most frequent first."""
    explanation: str
    """The first explainer's text ("" when the SAE has no explanations)."""
    score: float | None
    shuffled_score: float | None
    """The first explanation's first metric and its shuffled control (None without one)."""
    category: str
    """The best specialist category ("" when the feature is no specialist)."""
    pos_token_ids: list[int]
    neg_token_ids: list[int]
    freq_hist_edges: list[float]
    logits_hist_edges: list[float]
    """Histogram edges (one more than the bars), which Neuronpedia's bar centres lose."""
    coactivating: list[Neighbour]
    specialist: list[SpecialistHit]
    matches: list[Match]
    map_xy: list[float] | None


class FeatureRecord(_Record):
    modelId: str
    layer: str
    index: str
    creatorId: str
    sourceSetName: str
    maxActApprox: float
    frac_nonzero: float
    hasVector: bool
    vector: list[float]
    vectorLabel: None
    vectorDefaultSteerStrength: None
    hookName: None
    topkCosSimIndices: list[int]
    topkCosSimValues: list[float]
    neuron_alignment_indices: list[int]
    neuron_alignment_values: list[float]
    neuron_alignment_l1: list[float]
    correlated_neurons_indices: list[int]
    correlated_neurons_pearson: list[float]
    correlated_neurons_l1: list[float]
    correlated_features_indices: list[int]
    correlated_features_pearson: list[float]
    correlated_features_l1: list[float]
    decoder_weights_dist: list[float]
    neg_str: list[str]
    neg_values: list[float]
    pos_str: list[str]
    pos_values: list[float]
    freq_hist_data_bar_heights: list[float]
    freq_hist_data_bar_values: list[float]
    logits_hist_data_bar_heights: list[float]
    logits_hist_data_bar_values: list[float]
    umap_x: float | None
    umap_y: float | None
    umap_cluster: None
    umap_log_feature_sparsity: None
    saelab: FeatureExtras


class ActivationExtras(_Record):
    group: int
    """-1 for the top windows, else the quantile group (0 = lowest activations)."""
    rank: int
    """Place within its group (strongest first for the top windows)."""
    sequence: int
    start: int
    """The window's source: corpus sequence and first position. Token ids are left out (a third
    of the activations' bytes): the tokenizer gives them, and the dashboard file keeps them."""


class ActivationRecord(_Record):
    id: str
    modelId: str
    layer: str
    index: str
    creatorId: str
    dataSource: None
    dataIndex: str
    """The corpus sequence the window comes from."""
    tokens: list[str]
    values: list[float]
    maxValue: float
    maxValueTokenIndex: int
    minValue: float
    dfaValues: list[float]
    dfaMaxValue: None
    dfaTargetIndex: None
    binMin: float
    binMax: float
    binContains: float
    saelab: ActivationExtras


class ExplanationExtras(_Record):
    explainer: str
    rank: int
    """Place among the feature's explanations (0 = the one the site shows first)."""
    scores: dict[str, float]
    shuffled: dict[str, float]
    """metric -> score of another feature's explanation on the same windows (the control)."""


class ExplanationRecord(_Record):
    id: str
    modelId: str
    layer: str
    index: str
    authorId: str
    description: str
    embedding: None
    typeName: None
    explanationModelName: None
    umap_x: None
    umap_y: None
    umap_cluster: None
    umap_log_feature_sparsity: None
    saelab: ExplanationExtras


RECORDS: dict[str, type[_Record]] = {
    "features": FeatureRecord,
    "activations": ActivationRecord,
    "explanations": ExplanationRecord,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "features": ("modelId", "layer", "index"),
    "activations": ("id", "modelId", "layer", "index", "tokens", "values", "maxValue", "maxValueTokenIndex",
                    "minValue", "creatorId"),  # fmt: skip
    "explanations": ("id", "modelId", "layer", "index", "description", "authorId"),
}
"""The columns Neuronpedia's database needs a value for (see the module docstring)."""


class NeuronpediaSource(_Record):
    """Where the SAE's features live on Neuronpedia: ``<modelId>/<layer>``."""

    modelId: str
    layer: str
    """The source id, ``<block>-<set name>``."""
    sourceSetName: str


class Metrics(BaseModel):
    """The SAE's metrics; one not measured is None. Other measured numbers are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    l0: float | None = None
    explained_variance: float | None = None
    ce_loss_recovered: float | None = None
    dead_fraction: float | None = None
    dense_fraction: float | None = None


class ReportSummary(BaseModel):
    """``summary.json``: which SAE the folder describes, how, and its SAE-wide tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    info: SaeInfo
    config: DashboardConfig
    neuronpedia: NeuronpediaSource
    metrics: Metrics
    specialists: list[dict[str, Any]]
    explanation_scores: list[dict[str, Any]]
    n_features: int
    batch_size: int
    batches: list[int]
    map_method: str | None
