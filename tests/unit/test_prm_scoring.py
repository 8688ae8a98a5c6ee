"""agentrm.scoring.score_trajectories with a real SQLite store and a deterministic scorer."""

from __future__ import annotations

import pytest

from agentrm.errors import AgentrmError
from agentrm.scoring import score_trajectories
from agentrm.traces import open_store
from agentrm.types import ExitStatus, ScoreLevel
from agentrm.verifiers.base import ScorerBase
from agentrm.verifiers.prm_tiny import sample_trajectory


class TurnCount(ScorerBase):
    """Scores turn k with k / n; records the batches it was handed."""

    name = "turn-count"

    def __init__(self):
        self.batches = []

    def score(self, trajectories, context=None):
        self.batches.append([t.id for t in trajectories])
        rows = []
        for t in trajectories:
            rows += [self.turn_score(t.id, turn.index, turn.index / len(t.turns)) for turn in t.turns]
            rows.append(self.trajectory_score(t.id, None))
        return rows


class Stray(TurnCount):
    def score(self, trajectories, context=None):
        return [self.turn_score("someone-else", 0, 1.0)]


TRAJS = [sample_trajectory(f"t{i}", i + 1, seed=i) for i in range(5)]


def test_batches_progress_and_rows(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.import_trajectories(TRAJS)
    scorer, seen = TurnCount(), []
    rows = score_trajectories(TRAJS, [scorer], store=store, batch_size=2,
                              on_progress=lambda done, total: seen.append((done, total)))
    assert scorer.batches == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert len(rows) == sum(len(t.turns) + 1 for t in TRAJS) == 20
    assert len(store.get_scores(scorer="turn-count")) == 20
    score_trajectories(iter(TRAJS), [scorer], store=store, batch_size=3,
                       on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, None)  # an iterator has no known total
    assert len(store.get_scores(scorer="turn-count")) == 20  # idempotent


def test_a_scorer_that_scores_foreign_trajectories_is_stopped(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(AgentrmError, match="not given"):
        score_trajectories(TRAJS, [Stray()], store=store)
    assert store.get_scores() == []


def test_bad_batch_size():
    with pytest.raises(ValueError):
        score_trajectories(TRAJS, [TurnCount()], batch_size=0)


@pytest.mark.model
def test_prm_gives_no_trajectory_verdict_for_an_infrastructure_failure(tmp_path):
    from agentrm.verifiers.prm import make_scorer
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    model = build_tiny_prm(tmp_path / "m", "value")
    broken = sample_trajectory("broken", 2)
    broken.exit_status = ExitStatus.SANDBOX_ERROR
    rows = make_scorer(model=str(model), style="value").score([broken])
    total = [r for r in rows if r.level == ScoreLevel.TRAJECTORY][0]
    assert total.value is None and "infrastructure" in total.details["reason"]
    assert all(r.value is not None for r in rows if r.level == ScoreLevel.TURN)
