"""``python -m saelab.dashboards``: build a profile's dashboards, their reports and their site.

    python -m saelab.dashboards --profile offline --out dashboards/site --reports dashboards/reports
    python -m saelab.dashboards --hooks blocks.20.hook_resid_pre --features 500 --out /tmp/site

Open ``<out>/index.html`` in a browser afterwards (it needs no server and no network).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from saelab.dashboards.for_profile import ProfileDashboardsConfig, profile_dashboards


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m saelab.dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--profile", default="offline", help="saelab profile (default: offline)")
    parser.add_argument("--hooks", nargs="*", default=[], help="hooks of the profile (default: all of them)")
    parser.add_argument("--out", type=Path, default=Path("dashboards/site"), help="the site's folder")
    parser.add_argument("--reports", type=Path, default=None,
                        help="the reports' folder (default: 'reports' beside --out)")  # fmt: skip
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens in the activation store (default 100k)")
    parser.add_argument("--features", type=int, default=None, help="only the first N features of each SAE")
    parser.add_argument("--no-explain", action="store_true", help="skip the LLM-free explanations and their scores")
    parser.add_argument("--no-specialists", action="store_true", help="skip the category specialists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = ProfileDashboardsConfig(profile=args.profile, hooks=tuple(args.hooks), store_tokens=args.tokens,
                                     explain=not args.no_explain, specialists=not args.no_specialists,
                                     n_features=args.features)  # fmt: skip
    reports = args.reports or args.out.parent / "reports"
    started = time.perf_counter()
    dashes = profile_dashboards(config, args.out, reports)
    seconds = time.perf_counter() - started
    site_mb, reports_mb = _folder_size(args.out) / 1e6, _folder_size(reports) / 1e6
    logging.info("%d SAEs, %d features in %.0f s; site %.1f MB (%s), reports %.1f MB (%s)",
                 len(dashes), sum(len(d) for d in dashes), seconds, site_mb, args.out / "index.html", reports_mb,
                 reports)  # fmt: skip


if __name__ == "__main__":
    main()
