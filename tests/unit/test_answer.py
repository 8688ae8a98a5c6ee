"""Answer verifier: matching modes, answer extraction, score rows and abstentions."""

from __future__ import annotations

import pytest

from agentrm.types import ExitStatus, ScoreLevel, Trajectory, Turn
from agentrm.verifiers import answer as A
from agentrm.verifiers.registry import make_scorer


def traj(final: str | None = None, truth: str | None = "Paris", question="What is the capital of France?",
         submit: str | None = None, status=ExitStatus.SUBMITTED, tid="t1") -> Trajectory:
    turns = [Turn(0, [{"role": "user", "content": question}],
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]})]
    assistant = {"role": "assistant", "content": final or ""}
    if submit is not None:
        assistant["tool_calls"] = [{"id": "c2", "type": "function",
                                    "function": {"name": "submit", "arguments": {"answer": submit}}}]
    turns.append(Turn(1, [{"role": "tool", "tool_call_id": "c1", "content": "a.txt"}], assistant))
    return Trajectory(tid, "task", "g", turns=turns, exit_status=status, answer=truth)


@pytest.mark.parametrize("pred,gold,mode,expected", [
    ("Paris", "Paris", "exact", 1.0),
    ("paris", "Paris", "exact", 0.0),
    ("The Paris!", "paris", "normalised", 1.0),
    ("It is 1,234.50", "1234.5", "numeric", 1.0),
    ("3/4", "0.75", "numeric", 1.0),
    ("50%", "0.5", "numeric", 1.0),
    ("-3e2", "-300", "numeric", 1.0),
    ("41", "42", "numeric", 0.0),
    ("no number", "42", "numeric", 0.0),
    ("the cat sat", "cat sat down", "f1", 0.8),
    ("x", '["y", "X"]', "normalised", 1.0),
])
def test_match_modes(pred, gold, mode, expected):
    assert A.match(pred, gold, mode) == pytest.approx(expected)


def test_numeric_tolerance():
    assert A.numeric_match("3.1416", "3.14159", rel_tol=1e-4)
    assert not A.numeric_match("3.15", "3.14159", rel_tol=1e-4)
    assert A.numeric_match("100.4", "100", abs_tol=0.5, rel_tol=0)


def test_token_f1_independent():
    # precision 2/3, recall 2/4 -> F1 = 2*(2/3)*(1/2)/(2/3+1/2) = 4/7
    assert A.token_f1("red blue green", "red blue yellow pink") == pytest.approx(4 / 7)
    assert A.token_f1("", "") == 1.0 and A.token_f1("b", "") == 0.0


def test_extraction_order():
    assert A.extract_answer(traj(final="blah <answer>Lyon</answer>")) == "Lyon"
    assert A.extract_answer(traj(final="so \\boxed{42}")) == "42"
    assert A.extract_answer(traj(final="words", submit="Paris")) == "Paris"
    assert A.extract_answer(traj(final="  Paris ")) == "Paris"


def test_scorer_rows_and_provenance():
    scorer = make_scorer("answer", mode="normalised")
    good, bad = scorer.score([traj("paris", tid="a"), traj("Lyon", tid="b")])
    assert (good.value, bad.value) == (1.0, 0.0)
    assert good.level == ScoreLevel.TRAJECTORY and good.turn_index is None
    assert good.scorer == "answer" and good.config_hash == scorer.config_hash()
    assert make_scorer("answer", mode="f1").config_hash() != scorer.config_hash()


def test_abstain_and_infrastructure_are_not_zero():
    scorer = A.AnswerVerifier()
    no_truth = scorer.score_one(traj("Paris", truth=None))
    assert no_truth.value is None and "abstain" in no_truth.details
    infra = scorer.score_one(traj("Paris", status=ExitStatus.SANDBOX_ERROR))
    assert infra.value is None and infra.details["failure"] == "infrastructure"
    # a model failure (no answer) is a real 0
    assert scorer.score_one(traj(None)).value == 0.0


def test_ground_truth_from_options():
    scorer = A.AnswerVerifier(answers={"task": "Paris"})
    assert scorer.score_one(traj("Paris", truth=None)).value == 1.0


def test_bad_mode_is_input_error():
    from agentrm.errors import InputError
    with pytest.raises(InputError, match="--mode"):
        A.AnswerVerifier(mode="fuzzy")
