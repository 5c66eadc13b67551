"""saelab.autointerp.rendering: how a context becomes one line of prompt text, the same for
the LLM explainer and the detection and fuzzing judge."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.autointerp.feature_examples import Context
from saelab.autointerp.rendering import firing_marks, marked_text, peak_window, plain_text, shown_window


def test_peak_window_keeps_mostly_the_prefix_of_the_peak():
    acts = np.zeros(60)
    acts[40] = 3.0
    window = peak_window(acts, 24)
    # A causal model's activation depends on what precedes it: 3/4 of the window before the peak.
    assert (window.start, window.stop) == (40 - 18, 40 - 18 + 24)
    assert peak_window(acts[:10], 24) == slice(0, 10)
    late = np.zeros(60)
    late[59] = 1.0
    assert peak_window(late, 24) == slice(36, 60)  # no window past the end


def test_shown_window_cuts_tokens_and_activations_alike():
    tokens = tuple(f" w{i}" for i in range(30))
    acts = tuple(float(i == 20) for i in range(30))
    shown = shown_window(Context(tokens, tuple(range(30)), acts, (0, 0)), 8)
    assert shown.tokens == tokens[14:22]
    np.testing.assert_array_equal(shown.acts, np.asarray(acts[14:22], dtype=np.float32))


def test_firing_marks_need_the_threshold_and_a_share_of_the_peak():
    acts = np.array([0.0, 1.0, 0.2, 0.5, 0.31])
    assert firing_marks(acts, 0.3).tolist() == [False, True, False, True, True]
    assert firing_marks(acts, 0.3, threshold=0.4).tolist() == [False, True, False, True, False]
    assert not firing_marks(np.array([-1.0, 0.0]), 0.0).any()  # nothing above 0 marks nothing


def test_plain_text_drops_special_tokens_and_keeps_one_line():
    assert plain_text(["<|im_start|>", " I", " love", "\n", " dogs\r"]) == "I love\\n dogs\\r"


def test_marked_text_keeps_the_leading_space_outside_the_marks_and_joins_runs():
    assert marked_text([" New", " York", " is", " big"], [True, True, False, False]) == "<<New York>> is big"
    assert marked_text(["a", " b"], [False, True]) == "a <<b>>"
    with pytest.raises(ValueError, match="marks"):
        marked_text(["a"], [])
