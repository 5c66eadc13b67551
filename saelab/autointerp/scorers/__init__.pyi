# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .detection import DetectionConfig as DetectionConfig, detection_score as detection_score
from .embedding import embedding_scores as embedding_scores
from .simulation import simulation_score as simulation_score
