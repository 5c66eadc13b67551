"""The notebooks: stored clean, parameterised, one parameter away from the gpt2 profile, thin
(helpers only in exercise cells), and each runs top to bottom in a fresh kernel with FAST=True,
exporting its figures and passing its exercises' checks with the solutions they hold."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from saelab import profiles

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURES = {
    "01_setup": ["01_dense_vs_sparse", "01_logit_lens", "01_feature_by_category"],
    "02_feature_exploration": [
        "02_strongest_features", "02_specialist_heatmap", "02_coactivation", "02_feature_map", "02_padding_lesson",
    ],
    "03_multi_layer_comparison": [
        "03_specialist_scores_by_layer", "03_strongest_by_layer", "03_frequent_coverage_by_layer",
        "03_specialist_count_by_layer", "03_lineage_events", "03_specialist_lineages",
    ],
    "04_custom_training": [
        "04_training_curves", "04_pareto_explained_variance", "04_pareto_ce_loss_recovered", "04_dead_fraction",
        "04_feature_density", "04_feature_emergence", "04_sweep_frontiers",
    ],
    "05_interventions": [
        "05_steering_methods", "05_steering_summary", "05_attribution_vs_ablation", "05_attribution_by_position",
        "05_logit_effect", "05_circuit", "05_token_attribution",
    ],
    "06_automated_interpretability": [
        "06_score_distributions", "06_replication_simulation", "06_replication_embedding",
    ],
    "07_two_models": ["07_specialists_by_depth", "07_cross_model_match_share"],
}  # fmt: skip
GEMMA_RUN = ("01_setup", "02_feature_exploration")
"""Notebooks the tests also run under the gemma profile (all of them: scripts/run_demo.py --profile gemma)."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXERCISE = "# Exercise:"
"""First line of an exercise cell: the only kind of cell that may define a function."""
MAX_EXERCISES = 2


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _parameters(nb: nbformat.NotebookNode) -> dict:
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in cell.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    namespace: dict = {}
    exec(cell.source, namespace)  # the parameters cell holds plain assignments only
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_the_series_is_complete():
    assert [p.stem for p in NOTEBOOKS] == list(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_default_to_offline_and_switch_to_gpt2(path):
    params = _parameters(_read(path))
    assert params["PROFILE"] == "offline" and params["FAST"] is False
    assert {"ASSETS", "OUTPUTS"} <= set(params)
    # The one parameter a user changes: every model, SAE and hook then comes from the gpt2 profile.
    gpt2 = profiles.get("gpt2")
    assert gpt2.sae_release == "gpt2-small-res-jb"
    assert gpt2.hooks == tuple(f"blocks.{i}.hook_resid_pre" for i in (6, 8, 10, 11))
    assert [gpt2.neuronpedia_id(h) for h in gpt2.hooks] == [f"gpt2-small/{i}-res-jb" for i in (6, 8, 10, 11)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_takes_model_and_saes_from_the_profile(path):
    """No model name, SAE release or hook typed into a notebook: those would not follow PROFILE."""
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    assert "saelab.profiles.get(PROFILE)" in code
    without_comments = re.sub(r"#.*", "", code)
    for literal in ("smollm2", "gpt2-small", "saelab-smollm2-135m"):
        assert literal not in without_comments, f"{path.name} hard-codes {literal!r}"
    assert not re.search(r"blocks\.\d+\.hook_\w+", without_comments), f"{path.name} hard-codes a hook name"


def _exercises(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith(EXERCISE)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_defines_functions_only_in_its_exercises(path):
    """Library work belongs in saelab; a `def` serves an implement-it-yourself exercise, which
    checks the learner's function against the library in the same cell."""
    nb = _read(path)
    exercises = _exercises(nb)
    assert len(exercises) <= MAX_EXERCISES, f"{path.name} has {len(exercises)} exercises; at most {MAX_EXERCISES}"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        defines = re.search(r"^\s*(async\s+)?def |^\s*class ", cell.source, re.MULTILINE)
        if i in exercises:
            assert "exercises.check_" in cell.source, f"{path.name} cell {i}: an exercise without its check"
        else:
            assert not defines, f"{path.name} cell {i} defines a helper outside an exercise; it belongs in saelab"


def test_the_series_has_its_exercises():
    counts = {p.stem: len(_exercises(_read(p))) for p in NOTEBOOKS}
    assert counts["01_setup"] == 1 and counts["04_custom_training"] == 1, counts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_what_it_teaches_and_how_long_it_takes(path):
    first = _read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]} ·")
    objectives = first.source.split("**What you will learn**", 1)
    assert len(objectives) == 2, f"{path.name} opens without its learning objectives"
    bullets = re.findall(r"^- ", objectives[1].split("\n\n**", 1)[0], re.MULTILINE)
    assert 3 <= len(bullets) <= 5, f"{path.name} lists {len(bullets)} objectives"
    assert re.search(r"\*\*Time on a CPU:\*\* about [^\n]*min", first.source), f"{path.name} says no run time"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_fast_and_exports_its_figures(path, tmp_path):
    _run_and_check(path, tmp_path, {})


@pytest.mark.slow
@pytest.mark.parametrize("stem", GEMMA_RUN, ids=str)
def test_notebook_runs_under_the_gemma_profile(stem, tmp_path):
    """The second offline model through the same notebooks: nothing in them assumes SmolLM2."""
    _run_and_check(ROOT / "notebooks" / f"{stem}.ipynb", tmp_path, {"PROFILE": "gemma"})


def _run_and_check(path: Path, tmp_path: Path, extra: dict) -> None:
    import papermill

    assets, outputs = tmp_path / "assets", tmp_path / "outputs"
    declared = _parameters(_read(path))
    params = {"FAST": True, "ASSETS": str(assets), "OUTPUTS": str(outputs), **extra}
    if "N_PERMUTATIONS" in declared:
        params["N_PERMUTATIONS"] = 20_000
    executed = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(executed), parameters=params, cwd=str(path.parent), kernel_name="python3", progress_bar=False
    )
    nb = _read(executed)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for i in _exercises(nb):
        printed = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")
        assert "✓" in printed and "✗" not in printed, f"cell {i}: the exercise's solution fails its check: {printed}"
    for name in FIGURES[path.stem]:
        png = assets / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC, f"{png.name} was not exported"
        assert png.stat().st_size > 5_000, f"{png.name} looks empty"
        assert (assets / f"{name}.svg").is_file()
