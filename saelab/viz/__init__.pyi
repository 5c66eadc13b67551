# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .ablation import (
    estimate_vs_ablation_figure as estimate_vs_ablation_figure,
    logit_effect_figure as logit_effect_figure,
)
from .attribution import (
    attribution_bars as attribution_bars,
    circuit_figure as circuit_figure,
    token_attribution_figure as token_attribution_figure,
)
from .autointerp import (
    explanation_table_html as explanation_table_html,
    replication_figure as replication_figure,
    score_distributions as score_distributions,
)
from .charts import grouped_bar as grouped_bar
from .crossmodel import (
    match_share_heatmap as match_share_heatmap,
    specialists_by_depth_figure as specialists_by_depth_figure,
)
from .emergence import feature_stability_figure as feature_stability_figure
from .explorer_data import ExplorerData as ExplorerData
from .export import save_figure as save_figure
from .feature_explorer import FeatureExplorer as FeatureExplorer
from .feature_map import feature_map_figure as feature_map_figure
from .features import (
    category_bar as category_bar,
    coactivation_heatmap as coactivation_heatmap,
    feature_heatmap as feature_heatmap,
    logit_lens_bar as logit_lens_bar,
    top_features_bar as top_features_bar,
)
from .frontiers import sweep_frontiers as sweep_frontiers
from .highlight import (
    TokenHighlight as TokenHighlight,
    highlight_feature as highlight_feature,
    highlight_texts as highlight_texts,
)
from .layers import (
    coverage_by_layer as coverage_by_layer,
    specialist_count_by_layer as specialist_count_by_layer,
    specialist_heatmap as specialist_heatmap,
)
from .lineages import (
    feature_across_layers as feature_across_layers,
    lineage_event_bars as lineage_event_bars,
    lineage_sankey as lineage_sankey,
)
from .playground import SteeringPlayground as SteeringPlayground
from .sparsity import dense_vs_sparse_figure as dense_vs_sparse_figure, density_histograms as density_histograms
from .steering import steering_summary_figure as steering_summary_figure, steering_sweep_figure as steering_sweep_figure
from .steering_methods import steering_methods_figure as steering_methods_figure
from .style import visible_token as visible_token
from .text_explorer import TextExplorer as TextExplorer
from .training import pareto as pareto, training_curves as training_curves
