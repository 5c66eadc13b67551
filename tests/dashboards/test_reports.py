"""Reports in Neuronpedia's bulk-import layout: every record written matches the schema and
carries the fields Neuronpedia requires, reads back into the frames it came from, and bad
input (another SAE's folder, a truncated batch, an SAE without explanations, an invalid
value) gives a clear error or a repair, never a half-written folder."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from saelab.dashboards import export_reports, load_reports
from saelab.dashboards.data import SaeDashboard
from saelab.dashboards.load import columns, report_frames
from saelab.dashboards.records import neuronpedia_source, round_sig
from saelab.dashboards.reports import sae_folder
from saelab.dashboards.schema import KINDS, RECORDS, REQUIRED
from tests.dashboards._sample import sample_dashboard, sample_feature

HOOKS = tuple(f"blocks.{layer}.hook_resid_pre" for layer in (15, 20, 25, 28))


def folder_of(out: Path, dashboard: SaeDashboard) -> Path:
    return sae_folder(out, dashboard.info)


def lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_the_layout_is_neuronpedias_and_every_record_matches_the_schema(tmp_path):
    dashboard = sample_dashboard()
    folder = folder_of(export_reports(dashboard, tmp_path, batch_size=5), dashboard)
    assert folder == tmp_path / "smollm2-135m" / "20-res-saelab"  # Neuronpedia's model and source ids
    for kind in KINDS:
        files = sorted(p.name for p in (folder / kind).iterdir())
        assert files == ["batch-0.jsonl.gz", "batch-1.jsonl.gz", "batch-2.jsonl.gz"], kind
        for batch in range(3):
            rows = lines(folder / kind / f"batch-{batch}.jsonl.gz")
            keys = set()
            for line in rows:
                RECORDS[kind].model_validate_json(line, strict=True)
                data = json.loads(line)
                keys.add(tuple(data))  # the importer takes its columns from the first line
                assert all(data[name] is not None for name in REQUIRED[kind]), (kind, data)
                assert 5 * batch <= int(data["index"]) < 5 * (batch + 1)
                assert (data["modelId"], data["layer"]) == ("smollm2-135m", "20-res-saelab")
            assert len(keys) <= 1
    features = [json.loads(x) for b in range(3) for x in lines(folder / "features" / f"batch-{b}.jsonl.gz")]
    assert [f["index"] for f in features] == [str(i) for i in range(12)]
    activations = [json.loads(x) for b in range(3) for x in lines(folder / "activations" / f"batch-{b}.jsonl.gz")]
    assert len({a["id"] for a in activations}) == len(activations)
    assert all(a["id"].startswith("c") and "-" not in a["id"] for a in activations)  # Neuronpedia's cuid check


def test_batch_n_holds_features_1024n_to_1024n_plus_1023(tmp_path):
    rng = np.random.default_rng(0)
    base = sample_dashboard(d_sae=12)
    info = dataclasses.replace(base.info, d_sae=2051)
    features = {i: sample_feature(i, 2051, rng) for i in (0, 1023, 1024, 2050)}
    folder = folder_of(export_reports(SaeDashboard(info, base.config, base.summary, features), tmp_path), base)
    held = {p.name: [json.loads(x)["index"] for x in lines(p)] for p in (folder / "features").iterdir()}
    assert held == {"batch-0.jsonl.gz": ["0", "1023"], "batch-1.jsonl.gz": ["1024"], "batch-2.jsonl.gz": ["2050"]}


def test_reports_read_back_into_the_frames_they_came_from(tmp_path):
    dashboard = sample_dashboard()
    reports = load_reports(folder_of(export_reports(dashboard, tmp_path, batch_size=4), dashboard))
    for made, read in zip(report_frames(dashboard)[:3], reports[:3], strict=True):
        pd.testing.assert_frame_equal(made, read)
    # The features frame holds the dashboard's own index table, numbers unrounded.
    expected = dashboard.frame()
    pd.testing.assert_frame_equal(reports.features.loc[:, list(expected.columns)], expected)
    acts = reports.activations
    for index, f in dashboard.features.items():
        windows = [*f.top, *(c for q in f.quantiles for c in q.examples)]
        mine = acts[acts.feature == index]
        assert [tuple(t) for t in mine.tokens] == [c.tokens for c in windows]
        assert [(s, t) for s, t in zip(mine.sequence, mine.start, strict=True)] == [c.source for c in windows]
        for values, c in zip(mine["values"], windows, strict=True):
            np.testing.assert_allclose(values, c.acts, rtol=5e-3)  # 3 significant digits
        assert list(mine.binMin[: len(f.top)]) == [-1.0] * len(f.top)  # SAEDashboard's top group
        assert list(mine.binContains[len(f.top) :]) == [q.share for q in f.quantiles for _ in q.examples]
    assert list(reports.explanations.description) == [e.text for f in dashboard.features.values()
                                                      for e in f.explanations]  # fmt: skip
    assert reports.summary["info"]["hook"] == dashboard.info.hook


def test_an_sae_without_explanations_has_empty_batches_and_empty_fields(tmp_path):
    dashboard = sample_dashboard(explained=False)
    folder = folder_of(export_reports(dashboard, tmp_path), dashboard)
    assert gzip.decompress((folder / "explanations" / "batch-0.jsonl.gz").read_bytes()) == b""
    reports = load_reports(folder)
    assert list(reports.features.explanation) == [""] * 12
    assert reports.features.score.isna().all() and reports.features.shuffled_score.isna().all()
    assert reports.explanations.empty and list(reports.explanations.columns) == columns("explanations")
    assert reports.summary["explanation_scores"] == dashboard.summary["explanation_scores"]


def test_a_feature_that_never_fires_has_empty_lists_not_missing_ones(tmp_path):
    dashboard = sample_dashboard()
    reports = load_reports(folder_of(export_reports(dashboard, tmp_path), dashboard))
    dead = reports.features.set_index("feature").loc[3]
    assert dead.maxActApprox == 0.0 and dead.freq_hist_data_bar_heights == [] and dead.top_tokens == []
    assert 3 not in set(reports.activations.feature)


def test_summary_holds_identity_config_metrics_and_sae_tables(tmp_path):
    dashboard = sample_dashboard()
    del dashboard.summary["ce_loss_recovered"]
    dashboard.summary["l0"] = np.float32(31.5)  # numbers straight from numpy are fine
    summary = load_reports(folder_of(export_reports(dashboard, tmp_path), dashboard)).summary
    assert summary["metrics"]["ce_loss_recovered"] is None  # not measured
    assert summary["metrics"]["l0"] == 31.5 and summary["metrics"]["n_tokens"] == 10_000
    assert summary["specialists"] == dashboard.summary["specialists"]
    assert summary["explanation_scores"] == dashboard.summary["explanation_scores"]
    assert summary["n_features"] == 12 and summary["config"] == dashboard.config.to_dict()
    assert summary["neuronpedia"] == {"modelId": "smollm2-135m", "layer": "20-res-saelab",
                                      "sourceSetName": "res-saelab"}  # fmt: skip


def test_several_saes_get_a_folder_each(tmp_path):
    dashboards = [sample_dashboard(hook=hook, seed=i) for i, hook in enumerate(HOOKS)]
    export_reports(dashboards, tmp_path)
    for d in dashboards:
        assert load_reports(folder_of(tmp_path, d)).summary["info"]["hook"] == d.info.hook
    with pytest.raises(ValueError, match="share the report folder"):
        export_reports([dashboards[0], dashboards[0]], tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_the_same_dashboard_gives_the_same_bytes(tmp_path):
    dashboard = sample_dashboard()
    first = snapshot(folder_of(export_reports(dashboard, tmp_path / "a"), dashboard))
    second = snapshot(folder_of(export_reports(dashboard, tmp_path / "b"), dashboard))
    assert {k: v[0] for k, v in first.items()} == {k: v[0] for k, v in second.items()}


@pytest.mark.parametrize("change", [{"d_sae": 13}, {"source": "texts 0011"}])
def test_a_folder_of_another_sae_is_refused_and_left_alone(tmp_path, change):
    dashboard = sample_dashboard()
    folder = folder_of(export_reports(dashboard, tmp_path), dashboard)
    before = snapshot(folder)
    other = dataclasses.replace(dashboard, info=dataclasses.replace(dashboard.info, **change))
    assert folder_of(tmp_path, other) == folder
    with pytest.raises(ValueError, match=rf"another SAE: {next(iter(change))} .*Pass another `out`"):
        export_reports(other, tmp_path)
    assert snapshot(folder) == before


def test_a_truncated_batch_is_named_and_rewritten_and_intact_ones_are_kept(tmp_path, caplog):
    dashboard = sample_dashboard()
    folder = folder_of(export_reports(dashboard, tmp_path, batch_size=4), dashboard)
    before = snapshot(folder)
    broken = folder / "activations" / "batch-1.jsonl.gz"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"activations/batch-1\.jsonl\.gz is truncated"):
        load_reports(folder)
    with caplog.at_level(logging.WARNING, logger="saelab.dashboards.reports"):
        export_reports(dashboard, tmp_path, batch_size=4)
    assert [r.getMessage() for r in caplog.records] == [f"{broken} is truncated or corrupt; writing it again"]
    after = snapshot(folder)
    assert after["activations/batch-1.jsonl.gz"][0] == before["activations/batch-1.jsonl.gz"][0]
    intact = [name for name in before if name != "activations/batch-1.jsonl.gz"]
    assert [after[name] for name in intact] == [before[name] for name in intact]  # same bytes, inode and mtime


def test_an_invalid_value_writes_nothing(tmp_path):
    dashboard = sample_dashboard(hook=HOOKS[0])
    bad = sample_dashboard(hook=HOOKS[1])
    bad.features[5] = dataclasses.replace(bad.features[5], n_fired="many")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="n_fired"):
        export_reports([dashboard, bad], tmp_path)
    assert not tmp_path.joinpath("smollm2-135m").exists()


def test_batches_without_a_summary_are_refused(tmp_path):
    dashboard = sample_dashboard()
    folder = folder_of(export_reports(dashboard, tmp_path), dashboard)
    (folder / "summary.json").unlink()
    with pytest.raises(FileExistsError, match="no summary.json"):
        export_reports(dashboard, tmp_path)
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        load_reports(folder)


def test_the_out_folder_of_one_sae_loads_and_of_several_names_them(tmp_path):
    export_reports(sample_dashboard(), tmp_path / "one")
    assert len(load_reports(tmp_path / "one").features) == len(sample_dashboard())
    export_reports([sample_dashboard(), sample_dashboard(hook="blocks.15.hook_resid_pre")], tmp_path / "two")
    with pytest.raises(FileNotFoundError, match=r"SAE folders below it: .*/15-res-saelab, .*/20-res-saelab"):
        load_reports(tmp_path / "two")


def test_values_keep_three_significant_digits():
    rounded = round_sig([0.0, 1.23456, -0.000123456, 12345.6, 9.996, 0.30000001192092896])
    assert rounded == [0.0, 1.23, -0.000123, 12300.0, 10.0, 0.3]
    assert json.dumps(rounded) == "[0.0, 1.23, -0.000123, 12300.0, 10.0, 0.3]"  # shortest reprs


def test_neuronpedia_ids_come_from_the_published_id_or_the_hook():
    info = sample_dashboard().info
    assert neuronpedia_source(info).layer == "20-res-saelab"
    published = dataclasses.replace(info, model="gpt2", hook="blocks.11.hook_resid_pre",
                                     neuronpedia_id="gpt2-small/12-res-jb")  # fmt: skip
    assert neuronpedia_source(published).model_dump() == {"modelId": "gpt2-small", "layer": "12-res-jb",
                                                          "sourceSetName": "res-jb"}  # fmt: skip
    mlp = dataclasses.replace(info, hook="blocks.3.hook_mlp_out")
    assert neuronpedia_source(mlp).layer == "3-mlp-saelab"



def test_a_batch_the_new_dashboard_has_no_features_for_is_removed(tmp_path):
    dashboard = sample_dashboard()
    folder = folder_of(export_reports(dashboard, tmp_path, batch_size=4), dashboard)
    fewer = dataclasses.replace(dashboard, features={i: f for i, f in dashboard.features.items() if i < 8})
    export_reports(fewer, tmp_path, batch_size=4)
    assert sorted(p.name for p in (folder / "features").iterdir()) == ["batch-0.jsonl.gz", "batch-1.jsonl.gz"]
    assert list(load_reports(folder).features.feature) == list(range(8))
