"""Load: 50 concurrent listeners x 20 answers over HTTP on loopback, with retries, lose and duplicate nothing."""

from __future__ import annotations

import concurrent.futures
import io
import threading

import httpx
import pandas as pd
from sqlalchemy import create_engine, text

from songfeel.annotate.db import normalise_url
from tests.annotate_support import ADMIN

LISTENERS = 50
ANSWERS = 20


def listen(url: str, index: int, barrier: threading.Barrier) -> tuple[str, list[tuple[str, str | None, str]]]:
    """One simulated listener: 20 answers; every 4th is sent twice in a row, every 7th twice at once.

    Returns:
        the annotator id and, per answer, (triplet_id, odd one out clip id or None, client_answer_id).
    """
    sent = []
    with httpx.Client(base_url=url, timeout=120) as client, httpx.Client(base_url=url, timeout=120) as second:
        response = client.post("/api/sessions")
        assert response.status_code == 201, response.text
        annotator = response.json()["annotator_id"]
        barrier.wait(timeout=300)  # everyone starts answering together
        for i in range(ANSWERS):
            triplet = client.get("/api/triplets/next", params={"annotator_id": annotator}).json()
            assert triplet["position"] == i + 1 and not triplet["done"], triplet
            odd = None if (i + index) % 5 == 0 else triplet["clips"][(i + index) % 3]["clip_id"]
            body = {"annotator_id": annotator, "triplet_id": triplet["triplet_id"], "odd_one_out": odd,
                    "client_answer_id": f"{index}-{i}"}
            if i % 7 == 3:  # a retry racing the original (a reply lost on a flaky network)
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    codes = sorted(r.status_code for r in pool.map(lambda c: c.post("/api/answers", json=body),
                                                                   (client, second)))
                assert codes == [200, 201], codes
            else:
                first = client.post("/api/answers", json=body)
                assert first.status_code == 201, first.text
                if i % 4 == 0:  # the same answer sent again
                    again = client.post("/api/answers", json=body)
                    assert again.status_code == 200 and again.json() == first.json()
            sent.append((triplet["triplet_id"], odd, body["client_answer_id"]))
        done = client.get("/api/triplets/next", params={"annotator_id": annotator}).json()
        assert done["done"] and done["answered"] == ANSWERS
    return annotator, sent


def test_fifty_concurrent_listeners_lose_and_duplicate_nothing(start_survey, database_url):
    running = start_survey(database_url, questions_per_session=ANSWERS)
    barrier = threading.Barrier(LISTENERS)
    with concurrent.futures.ThreadPoolExecutor(LISTENERS) as pool:
        results = list(pool.map(lambda i: listen(running.url, i, barrier), range(LISTENERS)))

    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT annotator_id, triplet_id, odd_one_out_clip, client_answer_id FROM answers")).all()
        triplets = connection.execute(text("SELECT count(*) FROM triplets")).scalar()
    engine.dispose()
    assert len(rows) == LISTENERS * ANSWERS == 1000 and triplets == 1000
    expected = {(annotator, *answer) for annotator, sent in results for answer in sent}
    assert {tuple(r) for r in rows} == expected  # every answer, exactly as sent, once

    with httpx.Client(base_url=running.url, timeout=120) as client:
        export = client.get("/api/export", params={"format": "csv"}, headers=ADMIN)
        stats = client.get("/api/stats", headers=ADMIN).json()
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert len(lines) == 1001
    frame = pd.read_csv(io.StringIO(export.text), dtype=str).fillna("")
    assert frame.groupby("annotator").size().eq(ANSWERS).all() and frame["annotator"].nunique() == LISTENERS
    assert (frame["odd_one_out"] == "").sum() == sum(odd is None for _, sent in results for _, odd, _ in sent)
    assert stats["answers"] == 1000 and stats["annotators"] == LISTENERS
