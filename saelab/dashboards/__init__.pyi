# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .build import build_dashboards as build_dashboards
from .config import DashboardConfig as DashboardConfig
from .data import FeatureDashboard as FeatureDashboard, SaeDashboard as SaeDashboard
from .for_profile import ProfileDashboardsConfig as ProfileDashboardsConfig, profile_dashboards as profile_dashboards
from .load import Reports as Reports, load_reports as load_reports
from .reports import export_reports as export_reports
from .site.serve import serve_site as serve_site
from .site.write import write_site as write_site
