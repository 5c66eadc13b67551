# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import detection as detection, embedding as embedding, metrics as metrics, simulation as simulation
from .detection import (
    DetectionConfig as DetectionConfig,
    DetectionScore as DetectionScore,
    detection_probabilities as detection_probabilities,
    detection_score as detection_score,
)
from .embedding import embedding_scores as embedding_scores
from .metrics import all_negative as all_negative, auroc as auroc, median_margin as median_margin
from .simulation import SimulationScore as SimulationScore, simulation_score as simulation_score
