"""The AxBench-style steering judge: three chats per continuation, ratings parsed or left NaN
and counted, the harmonic-mean rule, clear errors, and the same plumbing over saelab's own
HTTP server. The 135M model is only a stand-in judge: these tests check the plumbing, not
the quality of its ratings."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saelab.autointerp.backends.http import BackendError, OpenAIBackend
from saelab.autointerp.backends.server import serve
from saelab.autointerp.steering_judge import (
    CATEGORY_DESCRIPTIONS,
    RATINGS,
    SteeringJudge,
    SteeringJudgeConfig,
    harmonic_mean,
    parse_rating,
)
from saelab.data import CATEGORIES
from saelab.interventions.judge_protocol import ConceptJudge

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Yesterday, when I got home,", "Write a Python function that"]
CONTINUATIONS = [" = = = = = = = =", " adds two numbers:\ndef add(a, b):\n    return a + b"]


class FakeBackend:
    """Answers each chat with ``answer(chat)`` and records what it was asked."""

    name = "fake"

    def __init__(self, answer=lambda chat: "Rating: [[2]]"):
        self.answer = answer
        self.calls: list[tuple[list, dict]] = []

    def complete(self, chats, *, max_tokens=48, temperature=0.0, seed=0):
        self.calls.append((list(chats), {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}))
        return [self.answer(chat) for chat in chats]

    def yes_probability(self, chats):
        return np.full(len(chats), 0.5)


def kind_of(chat) -> str:
    """Which rating a chat asks for, read from its rubric."""
    text = chat[-1]["content"]
    return "concept" if "[Concept start]" in text else "instruction" if "[Text start]" in text else "fluency"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The fragment is Python code. Rating: [[2]]", 2.0),
        ("Rating: [[0]]", 0.0),
        ("rating: 1", 1.0),
        ("2", 2.0),
        ("1.", 1.0),
        ("On a scale of 0 to 2, I give it 1", 1.0),  # no marked rating: the last number
        ("Rating: [[1]] ... on second thought, Rating: [[2]]", 2.0),
        ("Rating: [[2]] out of 10", 2.0),  # a marked rating beats a later number
        ("Rating: [[3]]", math.nan),  # off the scale: not clipped
        ("10", math.nan),
        ("1.5", math.nan),
        ("Rating: 2.5. The text reads well, 1 typo", math.nan),  # a marked rating off the scale decides
        ("2.0", 2.0),
        ('"Rating: [[score]]"', math.nan),
        ("", math.nan),
        ("The text is fluent.", math.nan),
    ],
)
def test_parse_rating_reads_the_last_rating_and_refuses_anything_off_the_scale(reply, expected):
    got = parse_rating(reply)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_harmonic_mean_is_zero_with_any_zero_and_nan_with_a_missing_rating():
    nan = math.nan
    ratings = np.array([[2, 2, 2], [1, 2, 2], [0, 2, 2], [0, nan, 2], [nan, 2, 2], [1, 1, 1]], dtype=float)
    np.testing.assert_allclose(harmonic_mean(ratings), [2.0, 1.5, 0.0, 0.0, nan, 1.0])


def test_rate_sends_three_chats_per_continuation_in_one_batch():
    backend = FakeBackend()
    frame = SteeringJudge(backend).rate(PROMPTS, CONTINUATIONS, "python")
    assert list(frame.columns) == [*RATINGS, "harmonic"] and len(frame) == 2
    assert (frame.to_numpy() == 2.0).all() and frame.attrs["unparsed"] == 0
    (chats, options), = backend.calls  # fmt: skip
    assert [kind_of(c) for c in chats] == list(RATINGS) * 2
    assert options == {"max_tokens": 200, "temperature": 0.0, "seed": 0}
    concept, instruction, fluency = (c[-1]["content"] for c in chats[3:])
    assert CATEGORY_DESCRIPTIONS["python"] in concept and CONTINUATIONS[1] in concept
    assert PROMPTS[1] in instruction and CONTINUATIONS[1] in instruction
    assert CONTINUATIONS[1] in fluency and PROMPTS[1] not in fluency and "Python" not in fluency
    assert all("Rating: [[score]]" in c[-1]["content"] and c[0]["role"] == "system" for c in chats)


def test_ratings_follow_each_reply_and_unparsed_ones_are_nan_and_counted(caplog):
    answers = {"concept": "Rating: [[0]]", "instruction": "Rating: [[2]]", "fluency": "I cannot tell."}
    judge = SteeringJudge(FakeBackend(lambda chat: answers[kind_of(chat)]), SteeringJudgeConfig(keep_replies=True))
    frame = judge.rate(PROMPTS, CONTINUATIONS, ["math", "python"])
    assert frame["concept"].tolist() == [0.0, 0.0] and frame["instruction"].tolist() == [2.0, 2.0]
    assert frame["fluency"].isna().all()
    assert frame["harmonic"].tolist() == [0.0, 0.0]  # a 0 decides, whatever the missing rating
    assert judge.unparsed == 2 and frame.attrs["unparsed"] == 2 and "2 of 6 ratings" in caplog.text
    assert frame["fluency_reply"].tolist() == ["I cannot tell."] * 2
    judge.rate(PROMPTS[:1], CONTINUATIONS[:1], "math")
    assert judge.unparsed == 1 and judge.unparsed_total == 3


def test_a_missing_rating_without_a_zero_leaves_the_harmonic_nan():
    answers = {"concept": "Rating: [[2]]", "instruction": "Rating: [[1]]", "fluency": "Rating: [[7]]"}
    frame = SteeringJudge(FakeBackend(lambda chat: answers[kind_of(chat)])).rate(PROMPTS, CONTINUATIONS, "python")
    assert frame["fluency"].isna().all() and frame["harmonic"].isna().all()


def test_the_digit_only_prompt_asks_for_a_digit_with_a_short_budget():
    backend = FakeBackend(lambda chat: "1")
    frame = SteeringJudge(backend, SteeringJudgeConfig(explain_first=False)).rate(PROMPTS, CONTINUATIONS, "math")
    (chats, options), = backend.calls  # fmt: skip
    assert options["max_tokens"] == 4 and "a single digit, 0, 1 or 2" in chats[0][-1]["content"]
    assert (frame.to_numpy() == 1.0).all()


def test_bad_input_gets_a_clear_error():
    judge = SteeringJudge(FakeBackend())
    with pytest.raises(ValueError, match=r"Unknown concept\(s\) \['cooking'\].*'conversational'.*descriptions="):
        judge.rate(PROMPTS, CONTINUATIONS, "cooking")
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        judge.rate(PROMPTS, CONTINUATIONS[:1], "math")
    with pytest.raises(ValueError, match="3 concepts for 2 continuations"):
        judge.rate(PROMPTS, CONTINUATIONS, ["math"] * 3)
    with pytest.raises(TypeError, match="continuations must be a list of strings"):
        judge.rate(PROMPTS[:1], CONTINUATIONS[0], "math")
    with pytest.raises(TypeError, match="must answer chats"):
        SteeringJudge(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1"):
        SteeringJudgeConfig(max_tokens=0)


def test_no_continuations_give_an_empty_frame_without_a_call():
    backend = FakeBackend()
    frame = SteeringJudge(backend).rate([], [], "math")
    assert list(frame.columns) == [*RATINGS, "harmonic"] and frame.empty and backend.calls == []


def test_other_concepts_come_with_their_descriptions():
    backend = FakeBackend()
    SteeringJudge(backend, descriptions={"dogs": "dogs and puppies"}).rate(PROMPTS[:1], CONTINUATIONS[:1], "dogs")
    assert "dogs and puppies" in backend.calls[0][0][0][-1]["content"]
    with pytest.raises(ValueError, match="non-empty strings"):
        SteeringJudge(backend, descriptions={"dogs": " "})


def test_every_dataset_category_has_a_description():
    assert sorted(CATEGORY_DESCRIPTIONS) == sorted(CATEGORIES)


def test_an_unreachable_endpoint_fails_naming_the_judge_and_the_url():
    with socket.socket() as sock:  # a port that was free a moment ago, and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = SteeringJudge(OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2, max_concurrency=1))
    with pytest.raises(BackendError, match="steering judge could not rate.*Cannot reach.*127.0.0.1"):
        judge.rate(PROMPTS[:1], CONTINUATIONS[:1], "math")


def test_the_judge_is_a_concept_judge_at_run_time():
    assert isinstance(SteeringJudge(FakeBackend()), ConceptJudge)


@pytest.mark.skipif(shutil.which("pyright", path=str(ROOT / ".venv" / "bin")) is None, reason="pyright not installed")
def test_pyright_accepts_the_judge_where_the_sweep_expects_a_concept_judge(tmp_path):
    snippet = tmp_path / "uses_the_protocol.py"
    snippet.write_text(textwrap.dedent("""
        from saelab.autointerp.steering_judge import SteeringJudge
        from saelab.interventions.judge_protocol import ConceptJudge

        class Unfit:
            def rate(self, prompts: list[str]) -> int:
                return 0

        def fits(judge: SteeringJudge) -> ConceptJudge:
            return judge

        def unfit(judge: Unfit) -> ConceptJudge:
            return judge  # the one error expected: a negative control
    """))  # fmt: skip
    pyright = str(ROOT / ".venv" / "bin" / "pyright")
    run = subprocess.run([pyright, str(snippet)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    errors = [line for line in run.stdout.splitlines() if " - error:" in line]
    assert len(errors) == 1 and ":13:" in errors[0], run.stdout


def check_frame(frame: pd.DataFrame, judge: SteeringJudge, n: int) -> None:
    assert list(frame.columns) == [*RATINGS, "harmonic"] and len(frame) == n
    ratings = frame[list(RATINGS)].to_numpy()
    assert np.isin(ratings[~np.isnan(ratings)], [0.0, 1.0, 2.0]).all()
    assert judge.unparsed == int(np.isnan(ratings).sum()) == frame.attrs["unparsed"]
    np.testing.assert_array_equal(frame["harmonic"].to_numpy(), harmonic_mean(ratings))


def test_over_http_each_continuation_costs_three_requests(tiny_model):
    # The tiny random model rates nonsense; only the path through the server is checked.
    with serve(tiny_model, model_id="tiny") as server:
        backend = OpenAIBackend(server.url, "tiny", max_concurrency=2)
        judge = SteeringJudge(backend, SteeringJudgeConfig(explain_first=False, keep_replies=True))
        frame = judge.rate(PROMPTS, CONTINUATIONS, "python")
    check_frame(frame[[*RATINGS, "harmonic"]].copy(), judge, 2)
    assert frame["fluency_reply"].map(type).eq(str).all()


@pytest.mark.slow
def test_the_embedded_model_behind_the_bundled_server_serves_as_a_stand_in_judge(model):
    with serve(model) as server:
        backend = OpenAIBackend(server.url, server.model_id)
        backend.check()
        judge = SteeringJudge(backend, SteeringJudgeConfig(explain_first=False))
        frame = judge.rate(PROMPTS, CONTINUATIONS, ["math", "python"])
    check_frame(frame, judge, 2)
    assert judge.unparsed < 6  # the instruct model answers at least some chats with a digit
