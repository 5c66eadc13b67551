"""Reading a report folder (:func:`saelab.dashboards.export_reports`) back into pandas.

Each record's ``saelab`` block is flattened into columns beside Neuronpedia's, and a few
columns are added under the names :meth:`SaeDashboard.frame` uses: ``feature`` (the int of
``index``) everywhere, ``density`` (``frac_nonzero``) and ``max_activation``
(``maxActApprox``) for features. Features are sorted by index; activations keep their order
within a feature (top windows, then the quantile groups, lowest first).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from saelab.dashboards._gc import gc_paused
from saelab.dashboards.data import SaeDashboard
from saelab.dashboards.records import batch_records
from saelab.dashboards.schema import KINDS, RECORDS

ADDED = {"features": {"density": "frac_nonzero", "max_activation": "maxActApprox"}, "activations": {},
         "explanations": {}}  # fmt: skip


class Reports(NamedTuple):
    features: pd.DataFrame
    """One row per feature."""
    activations: pd.DataFrame
    """One row per activation window."""
    explanations: pd.DataFrame
    """One row per explanation (no rows when the SAE has none)."""
    summary: dict[str, Any]
    """``summary.json``: info, config, neuronpedia ids, metrics, specialists, explanation scores."""


def columns(kind: str) -> list[str]:
    """A kind's frame columns: ``feature``, Neuronpedia's fields, the saelab block's, the added ones."""
    model = RECORDS[kind]
    extras = model.model_fields["saelab"].annotation
    assert isinstance(extras, type)  # a pydantic model class, declared in schema
    neuronpedia = [name for name in model.model_fields if name != "saelab"]
    return ["feature", *neuronpedia, *extras.model_fields, *ADDED[kind]]  # type: ignore[attr-defined]


def frame(kind: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records of one kind (as JSON gives them) as a frame with :func:`columns`."""
    rows = []
    for record in records:
        row = {"feature": int(record["index"]), **{k: v for k, v in record.items() if k != "saelab"},
               **record["saelab"]}  # fmt: skip
        row.update({name: record[source] for name, source in ADDED[kind].items()})
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns(kind))
    if kind == "features":
        out = out.sort_values("feature", kind="stable")
    return out.reset_index(drop=True)


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The records of one ``batch-N.jsonl.gz``; a truncated or corrupt file is an error naming it."""
    try:
        return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ValueError(f"{path} is truncated or corrupt ({exc}); export the reports again: export_reports "
                         "rewrites broken batches and keeps intact ones.") from exc  # fmt: skip


def _batch_number(path: Path) -> int:
    return int(path.name.removeprefix("batch-").split(".")[0])


def load_reports(folder: str | Path) -> Reports:
    """Read one SAE's report folder (``<out>/<model>/<sae slug>``) into frames; ``export_reports``'s
    ``out`` also works when it holds the reports of one SAE only."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    found = sorted(p.parent for p in folder.glob("*/*/summary.json"))
    if not summary_path.is_file() and len(found) == 1:
        folder, summary_path = found[0], found[0] / "summary.json"
    if not summary_path.is_file():
        hint = f"; pick one of the SAE folders below it: {', '.join(str(p) for p in found)}" if found else ""
        raise FileNotFoundError(f"{folder} is not an SAE's report folder: it has no summary.json{hint}.")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    frames = {}
    with gc_paused():
        for kind in KINDS:
            records: list[dict[str, Any]] = []
            for path in sorted((folder / kind).glob("batch-*.jsonl.gz"), key=_batch_number):
                records += read_batch(path)
            frames[kind] = frame(kind, records)
    return Reports(frames["features"], frames["activations"], frames["explanations"], summary)


def report_frames(dashboard: SaeDashboard) -> Reports:
    """The frames ``load_reports`` gives for ``dashboard``'s reports, made without writing them
    (the summary is left empty)."""
    records = batch_records(dashboard, sorted(dashboard.features))
    dumped = {kind: [RECORDS[kind].model_validate(r).model_dump(mode="json") for r in rows]
              for kind, rows in records.items()}  # fmt: skip
    return Reports(frame("features", dumped["features"]), frame("activations", dumped["activations"]),
                   frame("explanations", dumped["explanations"]), {})  # fmt: skip
