"""`make demo`: execute every notebook in notebooks/ headless, in order, offline profile (--profile: another).

Executed copies go to outputs/, figures (saved by the notebooks) to assets/. Notebooks are
stored without outputs; this never modifies them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEMO_CUTS = {"07_two_models": {"STEERING": False}}
"""What the demo leaves out to keep the series near its 20-minute budget on 2 CPU cores (``--full``
keeps it): notebook 07's steering of both models costs about 10 min on its own."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline", help="offline (default), gemma (offline too) or gpt2")
    parser.add_argument("--fast", action="store_true", help="pass FAST=True (test-sized runs)")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    parser.add_argument(
        "--full",
        action="store_true",
        help="run what the demo cuts for time too (notebook 07's steering of both models, ~10 min)",
    )
    args = parser.parse_args()

    import papermill

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if any(key in nb.name for key in args.only)]
    if not notebooks:
        print("[demo] no notebooks found in notebooks/ yet; nothing to run.")
        return 0
    out_dir = ROOT / "outputs"
    out_dir.mkdir(exist_ok=True)
    (ROOT / "assets").mkdir(exist_ok=True)
    results, total = [], time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        print(f"[demo {i}/{len(notebooks)}] {nb.name} ...", flush=True)
        start = time.perf_counter()
        cuts = {} if args.full else DEMO_CUTS.get(nb.stem, {})
        if cuts:
            print(f"[demo {i}/{len(notebooks)}]   cut for time: {cuts} (--full runs it)", flush=True)
        papermill.execute_notebook(
            str(nb),
            str(out_dir / nb.name),
            parameters={"PROFILE": args.profile, "FAST": args.fast, **cuts},
            cwd=str(nb.parent),
            progress_bar=False,
            kernel_name="python3",
        )
        took = time.perf_counter() - start
        results.append((nb.name, took))
        print(f"[demo {i}/{len(notebooks)}] {nb.name} done in {took:.0f} s", flush=True)
    print(f"\n[demo] all {len(results)} notebook(s) ran in {time.perf_counter() - total:.0f} s")
    for name, took in results:
        print(f"[demo]   {name:34s} {took:6.0f} s")
    figures = sorted((ROOT / "assets").glob("*.png"))
    pages = sorted(out_dir.glob("*.html"))
    print(f"[demo] executed notebooks: {out_dir}/")
    print(f"[demo] figures ({len(figures)} PNG, each with an SVG): {ROOT / 'assets'}/")
    print(
        "[demo] HTML pages (token highlighting, feature explorer; open in a browser): "
        + ", ".join(p.name for p in pages)
    )
    print(f"[demo] SAEs trained by notebook 04 (SAELens format): {out_dir / 'saes'}/")
    print("[demo] open the notebooks yourself with `make lab`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
