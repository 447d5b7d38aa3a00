"""Agreement and reliability of the survey's answers.

* **Answers per question** (a question is an unordered set of three songs):
  first answers only (a repeat is the same listener again and does not count).
* **Majority agreement** of a question with two or more decided first answers:
  the share of them that name the most-named song ("can't decide" does not
  vote). The survey's figure is the mean over such questions, and the pooled
  share (majority votes over decided answers) beside it.
* **Repeat agreement** of a listener: the share of their repeated questions
  answered the same both times (the same odd one out, or "can't decide" twice).
  A listener with at least ``min_repeats`` repeats and a repeat agreement below
  ``threshold`` is flagged as unreliable.
* **Agreement with others** of a listener: on questions where the other
  listeners' first answers have a strict majority, the share of the listener's
  decided first answers that name it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping


def _majority(votes: Counter) -> str | None:
    """The most-named song, or None for no votes or a tie."""
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def survey_stats(answers: Iterable[Mapping], min_repeats: int, threshold: float, with_questions: bool = False) -> dict:
    """Agreement and reliability from stored answers.

    Args:
        answers: one mapping per answer, oldest first: ``annotator``, ``triplet_id``,
            ``question_id``, ``songs`` (three track ids), ``odd_one_out`` (a track id or None),
            ``repeat_of`` (the triplet id it repeats, or None).
        min_repeats: repeats needed before a listener can be flagged.
        threshold: repeat agreement below which a listener is flagged, in [0, 1].
        with_questions: also list every question.

    Returns:
        ``answers``, ``undecided_answers``, ``annotators`` (who answered), ``questions``,
        ``answers_per_question`` (histogram: answers -> questions), ``majority_agreement``
        (mean; None without a question of two decided answers), ``pooled_majority_agreement``,
        ``questions_with_majority``, ``repeat_agreement`` (over all repeats, or None),
        ``per_annotator`` (``annotator``, ``answers``, ``undecided``, ``repeats``,
        ``repeat_agreement``, ``agreement_with_others``, ``flagged``), ``flagged_annotators``
        and, with ``with_questions``, ``questions_detail``.
    """
    answers = list(answers)
    firsts = [a for a in answers if a["repeat_of"] is None]
    questions = _questions(firsts)
    agreements, majority_votes, decided_total = _majority_agreements(questions)
    per = _per_annotator(answers, firsts, questions)
    rows, flagged, total_repeats, total_repeats_agreeing = _annotator_rows(per, min_repeats, threshold)

    histogram = Counter(q["answers"] for q in questions.values())
    report = {
        "answers": len(answers),
        "undecided_answers": sum(a["odd_one_out"] is None for a in answers),
        "annotators": len(per),
        "questions": len(questions),
        "answers_per_question": {str(n): histogram[n] for n in sorted(histogram)},
        "mean_answers_per_question": (len(firsts) / len(questions)) if questions else None,
        "questions_with_majority": len(agreements),
        "majority_agreement": (sum(agreements) / len(agreements)) if agreements else None,
        "pooled_majority_agreement": (majority_votes / decided_total) if decided_total else None,
        "repeat_agreement": (total_repeats_agreeing / total_repeats) if total_repeats else None,
        "repeats": total_repeats,
        "per_annotator": rows,
        "flagged_annotators": flagged,
    }
    if with_questions:
        report["questions_detail"] = [
            {"question_id": qid, "songs": q["songs"], "answers": q["answers"], "undecided": q["undecided"],
             "votes": dict(q["votes"]), "majority": q["majority"], "agreement": q["agreement"]}
            for qid, q in questions.items()
        ]
    return report


def _questions(firsts: list[Mapping]) -> dict[str, dict]:
    """Each question's songs, votes, answers and undecided answers, from the first answers."""
    questions: dict[str, dict] = {}
    for a in firsts:
        q = questions.setdefault(a["question_id"], {"songs": sorted(a["songs"]), "votes": Counter(),
                                                    "answers": 0, "undecided": 0, "by": {}})
        q["answers"] += 1
        q["by"][a["triplet_id"]] = a
        if a["odd_one_out"] is None:
            q["undecided"] += 1
        else:
            q["votes"][a["odd_one_out"]] += 1
    return questions


def _majority_agreements(questions: dict[str, dict]) -> tuple[list[float], int, int]:
    """Each question's majority and agreement (set in place); the agreements of questions with two
    decided answers or more, and the pooled majority votes and decided answers."""
    agreements, majority_votes, decided_total = [], 0, 0
    for q in questions.values():
        decided = sum(q["votes"].values())
        q["majority"] = _majority(q["votes"])
        q["agreement"] = (q["votes"].most_common(1)[0][1] / decided) if decided >= 2 else None
        if decided >= 2:
            agreements.append(q["agreement"])
            majority_votes += q["votes"].most_common(1)[0][1]
            decided_total += decided
    return agreements, majority_votes, decided_total


def _per_annotator(answers: list[Mapping], firsts: list[Mapping], questions: dict[str, dict]) -> dict[str, dict]:
    """Per listener: answers, undecided, repeats (and how many agree) and agreement with the others' majority."""
    by_triplet = {a["triplet_id"]: a for a in answers}
    per: dict[str, dict] = defaultdict(lambda: {"answers": 0, "undecided": 0, "repeats": 0, "repeats_agreeing": 0,
                                                "compared": 0, "agreeing": 0})
    for a in answers:
        p = per[a["annotator"]]
        p["answers"] += 1
        p["undecided"] += a["odd_one_out"] is None
        if a["repeat_of"] is not None and a["repeat_of"] in by_triplet:
            p["repeats"] += 1
            p["repeats_agreeing"] += by_triplet[a["repeat_of"]]["odd_one_out"] == a["odd_one_out"]
    for a in firsts:
        if a["odd_one_out"] is None:
            continue
        others = Counter(questions[a["question_id"]]["votes"])
        others[a["odd_one_out"]] -= 1
        majority = _majority(+others)
        if majority is not None:
            per[a["annotator"]]["compared"] += 1
            per[a["annotator"]]["agreeing"] += majority == a["odd_one_out"]
    return per


def _annotator_rows(per: dict[str, dict], min_repeats: int, threshold: float) -> tuple[list[dict], list[str], int, int]:
    """The per-listener rows, the flagged listeners, and the repeats (and agreeing repeats) of all."""
    rows, flagged = [], []
    total_repeats = total_repeats_agreeing = 0
    for annotator, p in per.items():
        repeat_agreement = p["repeats_agreeing"] / p["repeats"] if p["repeats"] else None
        is_flagged = p["repeats"] >= min_repeats and repeat_agreement is not None and repeat_agreement < threshold
        total_repeats += p["repeats"]
        total_repeats_agreeing += p["repeats_agreeing"]
        rows.append({
            "annotator": annotator,
            "answers": p["answers"],
            "undecided": p["undecided"],
            "repeats": p["repeats"],
            "repeat_agreement": repeat_agreement,
            "agreement_with_others": p["agreeing"] / p["compared"] if p["compared"] else None,
            "compared_with_others": p["compared"],
            "flagged": is_flagged,
        })
        if is_flagged:
            flagged.append(annotator)
    return rows, flagged, total_repeats, total_repeats_agreeing


__all__ = ["survey_stats"]
