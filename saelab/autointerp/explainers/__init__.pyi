# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import base as base, llm as llm, ngram as ngram, patterns as patterns, top_tokens as top_tokens
from .llm import LlmExplainer as LlmExplainer, LlmExplainerConfig as LlmExplainerConfig
from .ngram import NgramConfig as NgramConfig, NgramPatternExplainer as NgramPatternExplainer
from .patterns import Pattern as Pattern, format_patterns as format_patterns, parse_patterns as parse_patterns
from .top_tokens import TopTokensConfig as TopTokensConfig, TopTokensExplainer as TopTokensExplainer
