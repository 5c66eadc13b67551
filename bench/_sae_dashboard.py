# pyright: reportMissingImports=false
# (sae_dashboard lives in a venv of its own; see bench/dashboards.py)
"""The reference side of ``bench/dashboards.py``: SAEDashboard (``sae-dashboard`` 0.8.0) driven
through its own API on our model, SAE, tokens and features.

``sae-dashboard`` 0.8.0 cannot be installed beside our pins (it asks for transformer-lens<3,
transformers<4.57, jaxtyping<0.3, datasets<4, rich<14, safetensors<0.5, typer<0.13), so it
lives in a venv of its own, with our pins and sae-dashboard on top without its dependencies
(the command is in ``bench/dashboards.py``'s docstring). This file is then run there as a
script by the bench (``--tokens``, ``--features``, ``--out-dir``, ``--result``), with the repo
root on PYTHONPATH so that ``saelab`` loads the model and SAE. It imports ``sae_dashboard``
only inside :func:`run_sae_dashboard`, so importing this module needs no sae-dashboard.

What is driven, and with which settings (those of SAEDashboard's own Neuronpedia runner,
``sae_dashboard.neuronpedia.neuronpedia_runner``, which makes its whole-SAE dashboards; that
module itself imports wandb and loads models and data from the hub, so it is not used):

* ``SaeVisRunner(SaeVisConfig(...)).run(encoder=sae, model=model, tokens=tokens)``: the
  dashboard data. Layout: ``SequencesConfig(n_quantiles=5, top_acts_group_size=20,
  quantile_group_size=5, buffer=None)`` (20 top activations, then 5 groups of 5 examples drawn
  at random from 5 equal-width activation intervals over [0, max]: SAEDashboard's "quantile
  groups" are intervals of value, not quantiles), ``ActsHistogramConfig()`` and
  ``LogitsHistogramConfig()`` (50 bins each, its default), ``LogitsTableConfig(n_rows=10)``,
  ``FeatureTablesConfig(n_rows=3)``. ``minibatch_size_features=128``,
  ``minibatch_size_tokens=32``, ``quantile_feature_batch_size=64``, the model's activations
  cached on disk between feature batches (``cache_dir``, in a fresh folder), BOS/EOS/pad
  ignored (``ignore_tokens``), fp32 on CPU (no GPU-only path; the model forward stops after the
  hook's block).
* ``save_feature_centric_vis(data, "sae_dashboard.html")``: its HTML, timed separately. One file
  for all features (~0.35 MB per feature with whole 128-token rows); it loads plotly and d3
  from their CDNs, so offline it renders blank.
* ``NeuronpediaConverter.convert_to_np_json(...)``: the Neuronpedia JSON batch, timed separately.

Adjustments, all recorded in the result's ``details``:

* ``SaeVisRunner.run`` folds the decoder norms into the encoder in place, and sae-lens's
  ``TopKSAE.fold_W_dec_norm`` raises ``NotImplementedError`` when
  ``cfg.rescale_acts_by_decoder_norm`` is False (as for the suite SAEs: norms ~9.22). The
  runner works on a deep copy of the SAE whose fold is a no-op in that case, so activations
  and logit tables stay in the SAE's own units, as saelab's are.
* SAEDashboard always computes its feature tables (neuron alignment, correlated neurons and
  features: rolling correlations over every token); no setting turns them off. That is extra
  content over saelab's dashboard, included in its time; ``details["phases"]`` shows where the
  time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

N_TOP = 20
N_QUANTILES = 5
PER_GROUP = 5
N_LOGITS = 10
N_BINS = 50  # SAEDashboard's default for both histograms


@contextlib.contextmanager
def _timed_phases(phases: dict[str, float]) -> Iterator[None]:
    """Wrap SAEDashboard's main steps with timers (class attributes, restored after)."""
    from sae_dashboard.feature_data_generator import FeatureDataGenerator
    from sae_dashboard.sequence_data_generator import SequenceDataGenerator

    targets = [
        (FeatureDataGenerator, "get_model_acts", "model_forward"),
        (FeatureDataGenerator, "get_feature_data", "activations"),
        (SequenceDataGenerator, "get_sequences_data", "sequences"),
    ]
    saved = []
    for cls, name, phase in targets:
        original = cls.__dict__[name]
        saved.append((cls, name, original))

        def wrapper(*args: Any, _original: Any = original, _phase: str = phase, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                phases[_phase] += time.perf_counter() - began

        setattr(cls, name, wrapper)
    try:
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def _vocab_dict(model: Any) -> dict[int, str]:
    """Token id -> string, as the Neuronpedia runner builds it (its HTML_ANOMALIES, copied here:
    the module that holds them imports wandb)."""
    from sae_dashboard.sae_vis_data import OUT_OF_RANGE_TOKEN

    anomalies = {"âĢĶ": "—", "âĢĵ": "–", "âĢľ": "“", "âĢĿ": "”", "âĢĺ": "‘", "âĢĻ": "’", "âĢĭ": " ", "Ġ": " ",
                 "Ċ": "\n", "ĉ": "\t"}  # fmt: skip
    out = {}
    for token, index in model.tokenizer.vocab.items():
        for bad, good in anomalies.items():
            token = token.replace(bad, good)
        out[index] = token
    for i in range(len(out), model.cfg.d_vocab):
        out.setdefault(i, OUT_OF_RANGE_TOKEN)
    return out


def _content(data: Any) -> dict[str, Any]:
    """What SAEDashboard produced per feature: group sizes, histogram bins, logit rows (min/max over features)."""
    top, groups, per_group, act_bins, logit_bins, logit_rows, dead = [], [], [], [], [], [], 0
    for feature_data in data.feature_data_dict.values():
        seq_groups = feature_data.sequence_data.seq_group_data
        top.append(len(seq_groups[0].seq_data))
        groups.append(len(seq_groups) - 1)
        per_group.extend(len(g.seq_data) for g in seq_groups[1:])
        act_bins.append(len(feature_data.acts_histogram_data.bar_heights))
        logit_bins.append(len(feature_data.logits_histogram_data.bar_heights))
        table = feature_data.logits_table_data
        logit_rows.append(min(len(table.top_logits), len(table.bottom_logits)))
        dead += int(max(seq_groups[0].seq_data[0].feat_acts, default=0.0) <= 0.0)

    def span(xs: list[int]) -> list[int]:
        return [min(xs), max(xs)] if xs else []

    return {"top_examples": span(top), "quantile_groups": span(groups), "examples_per_group": span(per_group),
            "act_histogram_bins": span(act_bins), "logit_histogram_bins": span(logit_bins),
            "logit_table_rows": span(logit_rows), "features_never_firing": dead}  # fmt: skip


def run_sae_dashboard(
    model: Any,
    sae: Any,
    tokens: Tensor,
    features: list[int],
    out_dir: str | Path,
    *,
    buffer: tuple[int, int] | None = None,
    write_html: bool = True,
    write_json: bool = True,
    minibatch_size_features: int = 128,
    minibatch_size_tokens: int = 32,
    keep_data: bool = False,
) -> dict[str, Any]:
    """SAEDashboard's dashboards for ``features`` over ``tokens`` [n_seq, seq_len] (see the module
    docstring for the settings). ``seconds`` is ``SaeVisRunner.run`` alone (the dashboard data);
    the HTML and the Neuronpedia JSON are timed apart in ``details``, which also holds the CPU
    seconds (``time.process_time``) of the data and of the HTML. ``sae`` is not modified.

    ``buffer``: SAEDashboard's context around each example's peak (None, the Neuronpedia
    runner's choice: the whole sequence; ``(5, 5)``, its default layout's: 5 tokens each side,
    and no peak within 6 tokens of either end of a sequence). ``keep_data``: also return
    SAEDashboard's ``SaeVisData`` under ``"data"`` (for checks; not JSON).
    """
    import sae_dashboard
    from sae_dashboard.components_config import (
        ActsHistogramConfig,
        Column,
        FeatureTablesConfig,
        LogitsHistogramConfig,
        LogitsTableConfig,
        SequencesConfig,
    )
    from sae_dashboard.data_writing_fns import save_feature_centric_vis
    from sae_dashboard.layout import SaeVisLayoutConfig
    from sae_dashboard.neuronpedia.neuronpedia_converter import NeuronpediaConverter
    from sae_dashboard.neuronpedia.neuronpedia_runner_config import NeuronpediaRunnerConfig
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / "sae_dashboard_cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # its cache is keyed by minibatch index only: never reuse one
    tokens = tokens.to(torch.long).cpu()
    features = [int(f) for f in features]
    hook = sae.cfg.metadata.hook_name

    encoder = copy.deepcopy(sae)
    notes = []
    try:
        encoder.fold_W_dec_norm()  # what SaeVisRunner.run does first (a second fold changes nothing)
    except NotImplementedError:
        encoder.fold_W_dec_norm = lambda: None  # sae-lens refuses to fold a TopK SAE like this one
        notes.append("fold_W_dec_norm skipped: sae-lens's TopKSAE raises NotImplementedError when "
                     "rescale_acts_by_decoder_norm is False; activations stay in the SAE's own units")  # fmt: skip
    tokenizer = model.tokenizer
    ignore = {t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    layout = SaeVisLayoutConfig(
        columns=[
            Column(FeatureTablesConfig(n_rows=3)),
            Column(ActsHistogramConfig(n_bins=N_BINS), LogitsTableConfig(n_rows=N_LOGITS),
                   LogitsHistogramConfig(n_bins=N_BINS)),  # fmt: skip
            Column(SequencesConfig(stack_mode="stack-none", buffer=buffer, compute_buffer=True, n_quantiles=N_QUANTILES,
                                   top_acts_group_size=N_TOP, quantile_group_size=PER_GROUP)),  # fmt: skip
        ],
        height=750,
    )
    cfg = SaeVisConfig(
        hook_point=hook,
        features=features,
        minibatch_size_features=minibatch_size_features,
        minibatch_size_tokens=minibatch_size_tokens,
        quantile_feature_batch_size=64,
        device="cpu",
        dtype="float32",
        feature_centric_layout=layout,
        perform_ablation_experiments=False,
        cache_dir=cache_dir,
        ignore_tokens=ignore,
        verbose=False,
    )
    phases: dict[str, float] = defaultdict(float)
    with _timed_phases(phases):
        began, began_cpu = time.perf_counter(), time.process_time()
        data = SaeVisRunner(cfg).run(encoder=encoder, model=model, tokens=tokens)
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    phases["other"] = seconds - phases["activations"] - phases["sequences"]

    details: dict[str, Any] = {
        "sae_dashboard_version": sae_dashboard.__version__,
        "api": "SaeVisRunner(SaeVisConfig).run(encoder, model, tokens)",
        "n_seq": int(tokens.shape[0]),
        "seq_len": int(tokens.shape[1]),
        "n_tokens": int(tokens.numel()),
        "hook": hook,
        "threads": torch.get_num_threads(),
        "config": {"top_acts_group_size": N_TOP, "n_quantiles": N_QUANTILES, "quantile_group_size": PER_GROUP,
                   "logits_table_rows": N_LOGITS, "histogram_bins": N_BINS, "feature_table_rows": 3,
                   "buffer": buffer, "minibatch_size_features": minibatch_size_features,
                   "minibatch_size_tokens": minibatch_size_tokens, "ignore_tokens": sorted(ignore)},  # fmt: skip
        "data_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "phases": {k: round(v, 3) for k, v in phases.items()},
        "content": _content(data),
        "notes": notes,
    }
    shutil.rmtree(cache_dir, ignore_errors=True)
    if write_html:
        path = out_dir / "sae_dashboard.html"
        began, began_cpu = time.perf_counter(), time.process_time()
        save_feature_centric_vis(data, path)
        details["html_seconds"] = time.perf_counter() - began
        details["html_cpu_seconds"] = time.process_time() - began_cpu
        details["html_path"] = str(path)
        details["html_bytes"] = path.stat().st_size
    if write_json:
        vocab = _vocab_dict(model)
        np_cfg = NeuronpediaRunnerConfig(sae_set="saelab", sae_path="", outputs_dir=str(out_dir),
                                         n_prompts_total=int(tokens.shape[0]), n_tokens_in_prompt=int(tokens.shape[1]),
                                         n_quantiles=N_QUANTILES, top_acts_group_size=N_TOP,
                                         quantile_group_size=PER_GROUP)  # fmt: skip
        path = out_dir / "sae_dashboard_neuronpedia.json"
        began = time.perf_counter()
        path.write_text(NeuronpediaConverter.convert_to_np_json(model, data, np_cfg, vocab))
        details["json_seconds"] = time.perf_counter() - began
        details["json_path"] = str(path)
        details["json_bytes"] = path.stat().st_size
    result = {"seconds": seconds, "n_features": len(features), "details": details}
    if keep_data:
        result["data"] = data
    return result


def main() -> None:
    """Run as a script in the sae-dashboard venv: load the profile's model and SAE, run, write the result as JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=Path, required=True, help="a torch.save'd LongTensor [n_seq, seq_len]")
    p.add_argument("--features", type=Path, required=True, help="a JSON list of feature ids")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--result", type=Path, required=True, help="where to write the result as JSON")
    p.add_argument("--profile", default="offline")
    p.add_argument("--hook", default=None, help="the SAE's hook (default: the profile's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--buffer", type=int, nargs=2, default=None, metavar=("BEFORE", "AFTER"))
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import saelab

    began = time.perf_counter()
    profile = saelab.profiles.get(args.profile)
    model = profile.load_model(device="cpu")
    sae = profile.load_sae(args.hook, device="cpu")
    load_seconds = time.perf_counter() - began
    tokens = torch.load(args.tokens)
    features = json.loads(args.features.read_text())
    result = run_sae_dashboard(model, sae, tokens, features, args.out_dir,
                               buffer=tuple(args.buffer) if args.buffer else None,
                               write_html=not args.no_html, write_json=not args.no_json)  # fmt: skip
    result["details"]["load_seconds"] = load_seconds
    result["details"]["python"] = sys.executable
    args.result.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
