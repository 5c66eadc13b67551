"""The static site's files: what is written, that the data read back to the dashboards (decoded
here as the pages decode them), and the folder checks. The pages themselves run in
test_site_browser.py."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from saelab.autointerp.feature_examples import Context
from saelab.dashboards.data import SaeDashboard, TokenValue
from saelab.dashboards.site.encode import pack_script, read_pack, sig, sig_list, varints
from saelab.dashboards.site.write import MARKER, SiteFolderError, write_site
from tests.dashboards._sample import sample_dashboard

HOOK_A, HOOK_B = "blocks.20.hook_resid_pre", "blocks.15.hook_resid_pre"


def two_hooks() -> list[SaeDashboard]:
    return [sample_dashboard(hook=HOOK_A, other_hooks=(HOOK_B,)),
            sample_dashboard(hook=HOOK_B, other_hooks=(HOOK_A,), seed=1)]  # fmt: skip


def pack(root: Path, key: str) -> bytes:
    found_key, payload = read_pack((root / "data" / f"{key}.js").read_bytes())
    assert found_key == key
    return payload


def pack_json(root: Path, key: str) -> dict:
    return json.loads(pack(root, key))


def decode_varints(data: bytes) -> list[int]:
    out, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            out.append(value)
            value, shift = 0, 0
    return out


def read_windows(root: Path, model_key: str, shard_size: int, indices: list[int]) -> dict[int, dict]:
    """The windows as feature.js reads them: vocabulary entries from the shards."""
    vocab = pack_json(root, f"{model_key}/vocab")
    out = {}
    for index in indices:
        v = decode_varints(pack(root, f"{model_key}/w{index // shard_size}"))
        n, k = v[0], index % shard_size
        at = 1 + 3 * n + sum(v[1 + 2 * n : 1 + 2 * n + k])
        entries = v[at : at + v[1 + 2 * n + k]]
        out[index] = {"tokens": [vocab["tokens"][e] for e in entries], "ids": [vocab["ids"][e] for e in entries],
                      "source": (v[1 + k], v[1 + n + k])}  # fmt: skip
    return out


def feature_record(root: Path, key: str, feature: int) -> dict:
    index = pack_json(root, f"{key}/index")
    position = index["ids"].index(feature)
    batch = pack_json(root, f"{key}/f{position // index['batch']}")
    return next(r for r in batch["features"] if r["f"] == feature)


def test_writes_the_pages_assets_marker_and_data(tmp_path):
    out = write_site(two_hooks(), tmp_path / "site", title="Two hooks")
    assert out == (tmp_path / "site").resolve()
    model = "data/model-smollm2-135m"
    for name in ("index.html", "sae.html", "feature.html", MARKER, "assets/site.css", "assets/common.js",
                 "assets/feature.js", "data/site.js", f"data/{HOOK_A}/index.js", f"data/{HOOK_A}/f0.js",
                 f"data/{HOOK_B}/index.js", f"{model}/vocab.js", f"{model}/w0.js"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out / "assets/plotly.min.js").stat().st_size > 1_000_000
    marker = json.loads((out / MARKER).read_text())
    assert {(s["hook"], s["d_sae"]) for s in marker["saes"]} == {(HOOK_A, 12), (HOOK_B, 12)}
    site = pack_json(out, "site")
    assert site["title"] == "Two hooks"
    assert [s["key"] for s in site["saes"]] == [HOOK_A, HOOK_B]
    assert site["saes"][0]["metrics"]["l0"] == 32


def test_pages_load_only_files_of_the_folder(tmp_path):
    out = write_site(sample_dashboard(), tmp_path / "site")
    for page in ("index.html", "sae.html", "feature.html"):
        html = (out / page).read_text()
        refs = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert refs and all(r == "data:," or (out / r.split("?")[0]).is_file() for r in refs), refs
    for script in (out / "assets").glob("*.js"):
        if script.name != "plotly.min.js":
            # The SVG namespace is a name, never fetched; nothing else may name a web address.
            assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", script.read_text()), script.name


def test_the_index_lists_every_feature_with_its_table_columns(tmp_path):
    dash = sample_dashboard(hook=HOOK_A)
    out = write_site(dash, tmp_path / "site")
    index = pack_json(out, f"{HOOK_A}/index")
    assert index["ids"] == list(range(12))
    assert index["tokens"][0] == dash[0].peak_tokens()
    assert index["explanation"][0] == dash[0].explanations[0].text
    assert index["score"][0] == 0.6 and index["shuffled"][0] == 0.1
    assert index["category"][0] == "code" and index["category"][1] == ""
    assert index["n_fired"][3] == 0
    assert index["x"][5] == sig(dash[5].map_xy[0], 4)  # type: ignore[index]


def test_windows_read_back_to_the_tokens_and_activations(tmp_path):
    dash = sample_dashboard(hook=HOOK_A)
    out = write_site(dash, tmp_path / "site")
    index = pack_json(out, f"{HOOK_A}/index")
    for feature in (0, 7):
        record = feature_record(out, HOOK_A, feature)
        refs = record["top"] + [w for q in record["quantiles"] for w in q[3]]
        contexts = [*dash[feature].top, *(c for q in dash[feature].quantiles for c in q.examples)]
        windows = read_windows(out, index["model_key"], index["shard"], [r[0] for r in refs])
        for ref, ctx in zip(refs, contexts, strict=True):
            window = windows[ref[0]]
            assert window["tokens"] == list(ctx.tokens) and window["ids"] == list(ctx.token_ids)
            assert window["source"] == ctx.source
            acts = np.zeros(len(ctx.acts))
            acts[ref[1::2]] = np.asarray(ref[2::2]) * 10.0 ** record["exponent"]
            np.testing.assert_allclose(acts, ctx.acts, rtol=5e-3)  # 3 significant digits
            assert set(np.flatnonzero(acts)) == set(np.flatnonzero(ctx.acts))


def test_a_window_shown_by_several_features_and_saes_is_stored_once(tmp_path):
    first = sample_dashboard(hook=HOOK_A, other_hooks=())
    shared = first[0].top[0]
    second = sample_dashboard(hook=HOOK_B, other_hooks=(), seed=1)
    second.features[0] = replace(second[0], top=(replace(shared, acts=(0.0,) * 11 + (2.5,)), *second[0].top[1:]))
    out = write_site([first, second], tmp_path / "site")
    assert feature_record(out, HOOK_A, 0)["top"][0][0] == feature_record(out, HOOK_B, 0)["top"][0][0]
    assert feature_record(out, HOOK_B, 0)["top"][0][1:] == [11, 250]


def test_a_token_whose_string_differs_between_windows_is_shown_as_given(tmp_path):
    dash = sample_dashboard(hook=HOOK_A)
    ctx = dash[0].top[0]
    odd = Context(("<odd>", *ctx.tokens[1:]), ctx.token_ids, ctx.acts, (999, 0))
    dash.features[0] = replace(dash[0], top=(odd, *dash[0].top[1:]))
    out = write_site(dash, tmp_path / "site")
    index = pack_json(out, f"{HOOK_A}/index")
    ref = feature_record(out, HOOK_A, 0)["top"][0][0]
    window = read_windows(out, index["model_key"], index["shard"], [ref])[ref]
    assert window["tokens"][0] == "<odd>" and window["ids"][0] == ctx.token_ids[0]


def test_logit_tables_name_their_tokens_by_id(tmp_path):
    dash = sample_dashboard(hook=HOOK_A)
    odd = TokenValue("<not the vocabulary's>", dash[0].promoted[0].token_id, 2.5)
    dash.features[0] = replace(dash[0], promoted=(odd, *dash[0].promoted[1:]))
    out = write_site(dash, tmp_path / "site")
    index = pack_json(out, f"{HOOK_A}/index")
    vocab = pack_json(out, f"{index['model_key']}/vocab")
    entries = enumerate(zip(vocab["ids"], vocab["tokens"], strict=True))
    names = {i: t for e, (i, t) in entries if e not in vocab["variants"]}
    for feature in (0, 1):
        record = feature_record(out, HOOK_A, feature)
        for kind in ("promoted", "suppressed"):
            shown = [(row[2] if len(row) == 3 else names[row[0]], row[0], row[1]) for row in record[kind]]
            assert shown == [(t.token, t.token_id, sig(t.value)) for t in getattr(dash[feature], kind)]
    assert feature_record(out, HOOK_A, 0)["promoted"][0] == [odd.token_id, 2.5, odd.token]


def test_each_model_has_its_own_vocabulary(tmp_path):
    other = sample_dashboard(hook=HOOK_B, other_hooks=())
    other.info = replace(other.info, model="gpt2")
    out = write_site([sample_dashboard(hook=HOOK_A), other], tmp_path / "site")
    assert (out / "data/model-smollm2-135m/vocab.js").is_file() and (out / "data/model-gpt2/vocab.js").is_file()
    assert pack_json(out, f"{HOOK_B}/index")["model_key"] == "model-gpt2"


def test_summary_metrics_not_measured_are_null(tmp_path):
    dash = sample_dashboard()
    dash.summary["ce_loss_recovered"] = None
    dash.summary["custom"] = float("nan")
    out = write_site(dash, tmp_path / "site")
    metrics = pack_json(out, "site")["saes"][0]["metrics"]
    assert metrics["ce_loss_recovered"] is None and metrics["custom"] == "nan"


def test_rewriting_the_same_saes_replaces_the_site(tmp_path):
    out = write_site(two_hooks(), tmp_path / "site")
    (out / "data" / "stale.js").write_text("old")
    write_site(list(reversed(two_hooks())), out, title="again")
    assert pack_json(out, "site")["title"] == "again"
    assert not (out / "data" / "stale.js").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temporary folder left beside it


def test_a_folder_of_other_saes_is_refused(tmp_path):
    out = write_site(sample_dashboard(hook=HOOK_A), tmp_path / "site")
    with pytest.raises(SiteFolderError, match=rf"{re.escape(str(out))} holds the site of other SAEs.*another folder"):
        write_site(two_hooks(), out)
    with pytest.raises(SiteFolderError, match="other SAEs"):
        write_site(sample_dashboard(hook=HOOK_A, d_sae=13), out)
    assert pack_json(out, "site")["saes"][0]["key"] == HOOK_A


def test_a_folder_with_other_files_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("mine")
    with pytest.raises(SiteFolderError, match=rf"{re.escape(str(folder))} is not empty and is not a saelab site"):
        write_site(sample_dashboard(), folder)
    assert (folder / "todo.txt").read_text() == "mine"
    out = write_site(sample_dashboard(), tmp_path / "site")
    (out / "notes.md").write_text("mine")
    with pytest.raises(SiteFolderError, match=r"files the site did not write \(notes\.md\)"):
        write_site(sample_dashboard(), out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SiteFolderError, match="is a file"):
        write_site(sample_dashboard(), tmp_path / "file")


def test_an_unreadable_marker_is_refused(tmp_path):
    out = write_site(sample_dashboard(), tmp_path / "site")
    (out / MARKER).write_text("{not json")
    with pytest.raises(SiteFolderError, match="unreadable"):
        write_site(sample_dashboard(), out)


def test_a_failed_build_leaves_the_old_site_and_no_temporary_folder(tmp_path):
    out = write_site(sample_dashboard(), tmp_path / "site")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = sample_dashboard()
    ctx = broken[5].top[0]
    broken.features[5] = replace(broken[5], top=(replace(ctx, acts=(math.nan, *ctx.acts[1:])), *broken[5].top[1:]))
    with pytest.raises(ValueError, match="feature 5: cannot write a non-finite value"):
        write_site(broken, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]
    with pytest.raises(ValueError, match="non-finite"):
        write_site(broken, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        write_site([], tmp_path / "a")
    with pytest.raises(TypeError, match="SaeDashboard"):
        write_site(["not a dashboard"], tmp_path / "a")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="one SAE per hook"):
        write_site([sample_dashboard(), sample_dashboard(seed=1)], tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_a_dashboard_without_features_still_writes(tmp_path):
    dash = sample_dashboard()
    dash.features = {}
    out = write_site(dash, tmp_path / "site")
    assert pack_json(out, f"{HOOK_A}/index")["ids"] == []


def test_pack_scripts_carry_every_byte():
    payload = bytes(range(256)) * 4 + b'\\"\n\r\0' * 50
    script = pack_script("a/b-1.c_d", payload)
    assert b"\n" not in script[:-1] and b"\r" not in script and b"\0" not in script
    assert read_pack(script) == ("a/b-1.c_d", payload)
    with pytest.raises(ValueError, match="pack key"):
        pack_script('bad"key', b"")


def test_varints_round_trip():
    values = np.array([0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**40])
    assert decode_varints(varints(values)) == values.tolist()
    assert varints(np.zeros(0, dtype=np.int64)) == b""
    with pytest.raises(ValueError, match="non-negative"):
        varints(np.array([-1]))


def test_rounding_to_significant_digits():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=200) * 10.0 ** rng.integers(-6, 6, size=200), [0.0, 1234.5, 4.37]])
    assert sig_list(values) == [float(sig(v)) for v in values]
    assert json.dumps(sig_list(np.array([4.3721, 0.012345, 98765.0]))) == "[4.37, 0.0123, 98800.0]"
    with pytest.raises(ValueError, match="non-finite"):
        sig_list(np.array([1.0, np.inf]))


def test_serve_site_serves_the_folder_and_refuses_one_without_a_site(tmp_path):
    import urllib.request

    from saelab.dashboards.site.serve import serve_site

    site = write_site(sample_dashboard(), tmp_path / "site")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with serve_site(site) as server:
        with opener.open(server.page(), timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        with opener.open(f"{server.url}/data/site.js", timeout=10) as response:
            assert response.read() == (site / "data" / "site.js").read_bytes()
        assert server.page("blocks.20.hook_resid_pre", 7).endswith("feature.html?sae=blocks.20.hook_resid_pre&f=7")
    with pytest.raises(FileNotFoundError, match="holds no dashboard site"):
        serve_site(tmp_path)
