"""Agreement and reliability of survey answers, on worked numbers."""

from __future__ import annotations

import time

import pytest

from songfeel.annotate.ratelimit import ListenerRateLimiter, retry_after
from songfeel.annotate.stats import survey_stats

SONGS = ("x", "y", "z")


def answer(annotator, triplet, odd, question="q1", repeat_of=None, songs=SONGS):
    return {"annotator": annotator, "triplet_id": triplet, "question_id": question, "songs": songs,
            "odd_one_out": odd, "repeat_of": repeat_of}


def test_majority_agreement_and_reliability():
    answers = [
        # q1: four first answers, x x x y (and one "can't decide"): agreement 3/4.
        answer("ann", "t1", "x"), answer("bob", "t2", "x"), answer("cat", "t3", "x"), answer("dan", "t4", "y"),
        answer("eve", "t5", None),
        # q2: a tie, z against y: agreement 1/2, no majority.
        answer("ann", "t6", "z", "q2"), answer("bob", "t7", "y", "q2"),
        # q3: a single answer: no agreement figure.
        answer("ann", "t8", "x", "q3"),
        # Repeats: ann agrees twice, dan disagrees twice, bob once of two.
        answer("ann", "t9", "x", repeat_of="t1"), answer("ann", "t10", "z", "q2", repeat_of="t6"),
        answer("dan", "t11", "x", repeat_of="t4"), answer("dan", "t12", "z", repeat_of="t4"),
        answer("bob", "t13", "x", repeat_of="t2"), answer("bob", "t14", "z", "q2", repeat_of="t7"),
        answer("eve", "t15", None, repeat_of="t5"),
    ]
    stats = survey_stats(answers, min_repeats=2, threshold=0.5, with_questions=True)
    assert stats["answers"] == 15 and stats["undecided_answers"] == 2 and stats["annotators"] == 5
    assert stats["questions"] == 3 and stats["answers_per_question"] == {"1": 1, "2": 1, "5": 1}
    assert stats["mean_answers_per_question"] == pytest.approx(8 / 3)
    assert stats["questions_with_majority"] == 2
    assert stats["majority_agreement"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert stats["pooled_majority_agreement"] == pytest.approx((3 + 1) / (4 + 2))
    detail = {q["question_id"]: q for q in stats["questions_detail"]}
    assert detail["q1"]["majority"] == "x" and detail["q1"]["undecided"] == 1 and detail["q1"]["votes"] == {"x": 3, "y": 1}
    assert detail["q2"]["majority"] is None and detail["q3"]["agreement"] is None
    rows = {r["annotator"]: r for r in stats["per_annotator"]}
    assert rows["ann"]["repeats"] == 2 and rows["ann"]["repeat_agreement"] == 1.0 and not rows["ann"]["flagged"]
    assert rows["dan"]["repeat_agreement"] == 0.0 and rows["dan"]["flagged"]
    assert rows["bob"]["repeat_agreement"] == 0.5 and not rows["bob"]["flagged"]  # 0.5 is not below 0.5
    assert rows["eve"]["repeats"] == 1 and rows["eve"]["repeat_agreement"] == 1.0  # "can't decide" twice agrees
    assert stats["flagged_annotators"] == ["dan"]
    assert stats["repeats"] == 7 and stats["repeat_agreement"] == pytest.approx(4 / 7)
    # Against the others' majority: on q1 ann, bob, cat name x with the others' majority x; dan's y
    # disagrees with x; q2's others (one vote each) have a majority; q3 has no others.
    assert rows["ann"]["agreement_with_others"] == pytest.approx(1 / 2)  # q1 yes, q2 (others: y) no
    assert rows["dan"]["agreement_with_others"] == 0.0 and rows["dan"]["compared_with_others"] == 1
    assert rows["cat"]["agreement_with_others"] == 1.0
    assert rows["eve"]["agreement_with_others"] is None
    # With a stricter rule (3 repeats) nobody is flagged.
    assert survey_stats(answers, min_repeats=3, threshold=0.5)["flagged_annotators"] == []


def test_no_answers():
    stats = survey_stats([], min_repeats=2, threshold=0.5)
    assert stats["answers"] == 0 and stats["majority_agreement"] is None and stats["per_annotator"] == []


def test_rate_limit_is_a_moving_window_of_the_burst(monkeypatch):
    """limits' moving window, on a fake clock: 2 requests at once, then 1 per 2 s in the long run."""
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])  # limits' memory storage and the wait read time.time
    limiter = ListenerRateLimiter(rate=0.5, burst=2)
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(4.0)  # the window (2 requests per 4 s) is full for 4 s
    assert limiter.take("b") == 0.0  # another listener, another window
    now[0] += 3.0
    assert limiter.take("a") == pytest.approx(1.0)
    now[0] += 1.5
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0  # both requests of t=1000 left the window
    assert limiter.take("a") > 0
    assert retry_after(0.2) == "1" and retry_after(2.0) == "2" and retry_after(2.01) == "3"
    with pytest.raises(ValueError):
        ListenerRateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError, match="nosuch"):
        ListenerRateLimiter(rate=1, burst=1, storage_uri="nosuch://host")
