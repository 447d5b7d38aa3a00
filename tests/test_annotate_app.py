"""The survey's HTTP app on a real uvicorn server over loopback, against SQLite and PostgreSQL.

Every request that fails must leave the database as it was: the tests count rows before and after.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import itertools
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sqlalchemy import create_engine, text

from songfeel import manifest as manifest_io
from songfeel.annotate import app as app_module
from songfeel.annotate.db import normalise_url
from songfeel.annotate.selection import uncertainty_margin
from songfeel.audio import load_audio
from songfeel.triplets import human_triplets, read_human_answers, resolve_human_answers
from tests.annotate_support import ADMIN, ADMIN_TOKEN


def listener(client: httpx.Client) -> str:
    response = client.post("/api/sessions")
    assert response.status_code == 201, response.text
    annotator_id = response.json()["annotator_id"]
    assert len(annotator_id) == 32 and int(annotator_id, 16) >= 0
    return annotator_id


def next_triplet(client: httpx.Client, annotator_id: str) -> dict:
    response = client.get("/api/triplets/next", params={"annotator_id": annotator_id})
    assert response.status_code == 200, response.text
    return response.json()


def send(client: httpx.Client, annotator_id: str, triplet: dict, choice: int | None, client_answer_id: str,
         **changes) -> httpx.Response:
    body = {"annotator_id": annotator_id, "triplet_id": triplet["triplet_id"],
            "odd_one_out": None if choice is None else triplet["clips"][choice]["clip_id"],
            "client_answer_id": client_answer_id, **changes}
    return client.post("/api/answers", json=body)


def stored(running) -> dict[str, int]:
    return running.survey.counts()


def test_a_listener_answers_every_question_and_the_export_feeds_stage_03(start_survey, database_url, tmp_path):
    running = start_survey(database_url, questions_per_session=8, repeat_fraction=0.25)
    manifest = manifest_io.read(running.settings.manifest_path)
    splits = dict(zip(manifest["track_id"], manifest["split"]))
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        shown, choices = [], []
        for i in range(8):
            triplet = next_triplet(client, annotator)
            assert not triplet["done"] and triplet["position"] == i + 1 and triplet["answered"] == i
            assert [c["label"] for c in triplet["clips"]] == ["A", "B", "C"]
            assert all(c["audio_url"] == f"/api/clips/{c['clip_id']}" for c in triplet["clips"])
            assert len({c["clip_id"] for c in triplet["clips"]}) == 3
            choice = None if i % 4 == 3 else i % 3
            response = send(client, annotator, triplet, choice, f"answer-{i}")
            assert response.status_code == 201, response.text
            assert response.json()["answered"] == i + 1 and response.json()["total"] == 8
            shown.append(triplet)
            choices.append(choice)
        done = next_triplet(client, annotator)
        assert done["done"] and done["triplet_id"] is None and done["clips"] == [] and done["answered"] == 8
        export = client.get("/api/export", params={"format": "csv"}, headers=ADMIN)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert export.text.splitlines()[0] == "song1,song2,song3,odd_one_out,annotator"

    path = tmp_path / "human_answers.csv"
    path.write_text(export.text)
    answers = read_human_answers(path)
    assert len(answers) == 8 and set(answers["annotator"]) == {annotator}
    library = running.survey.library
    for row, triplet, choice in zip(answers.itertuples(index=False), shown, choices):
        songs = [library.get(c["clip_id"]).track_id for c in triplet["clips"]]
        assert [row.song1, row.song2, row.song3] == songs  # the order shown, A B C
        assert row.odd_one_out == ("" if choice is None else songs[choice])
        assert len({splits[s] for s in songs}) == 1  # stage 03 drops questions that cross splits
    # The repeats (2 of 8) ask an earlier question again, with every clip moved.
    repeats = 0
    for i, triplet in enumerate(shown):
        ids = [c["clip_id"] for c in triplet["clips"]]
        originals = [[c["clip_id"] for c in s["clips"]] for s in shown[:i] if {c["clip_id"] for c in s["clips"]} == set(ids)]
        if originals:
            repeats += 1
            assert all(a != b for a, b in zip(ids, originals[0]))
    assert repeats == 2
    resolved, counts = resolve_human_answers(answers)
    assert counts["answers"] == 8 and counts["undecided_answers"] == 2 and counts["questions"] == 6
    durations = dict(zip(manifest["track_id"], manifest["duration_seconds"]))
    rows, dropped = human_triplets(resolved, splits, durations)
    assert len(rows) == len(resolved) > 0 and dropped == {"dropped_missing_tracks": 0, "dropped_cross_split": 0}
    assert stored(running)["answers"] == 8


def test_next_returns_the_open_question_until_it_is_answered(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        first = next_triplet(client, annotator)
        assert next_triplet(client, annotator) == first
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # a page reloaded many times at once
            again = list(pool.map(lambda _: next_triplet(client, annotator), range(16)))
        assert all(t["triplet_id"] == first["triplet_id"] for t in again)
        assert stored(running)["triplets"] == 1
        assert send(client, annotator, first, 0, "a1").status_code == 201
        assert next_triplet(client, annotator)["triplet_id"] != first["triplet_id"]
    assert stored(running)["triplets"] == 2


def test_a_retried_answer_is_stored_once(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        triplet = next_triplet(client, annotator)
        first = send(client, annotator, triplet, 1, "retry-me")
        assert first.status_code == 201
        for _ in range(3):
            again = send(client, annotator, triplet, 1, "retry-me")
            assert again.status_code == 200 and again.json() == first.json()
        before = stored(running)
        # The same client_answer_id with another body, or another id for an answered triplet: 409.
        changed = send(client, annotator, triplet, 2, "retry-me")
        assert changed.status_code == 409 and "different answer" in changed.json()["detail"]
        other_id = send(client, annotator, triplet, 2, "another-id")
        assert other_id.status_code == 409 and "already answered" in other_id.json()["detail"]
        assert stored(running) == before and before["answers"] == 1
        # Two copies of one answer racing each other: one is created, the other gets the original.
        triplet = next_triplet(client, annotator)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: send(client, annotator, triplet, None, "raced"), range(6)))
        assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
        assert len({r.json()["answer_id"] for r in responses}) == 1
    assert stored(running)["answers"] == 2


def test_unknown_ids_get_a_clear_4xx_and_nothing_is_written(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        triplet = next_triplet(client, annotator)
        before = stored(running)
        stranger = uuid.uuid4().hex
        response = client.get("/api/triplets/next", params={"annotator_id": stranger})
        assert response.status_code == 404 and "unknown annotator_id" in response.json()["detail"]
        response = client.get("/api/triplets/next", params={"annotator_id": "../../etc/passwd"})
        assert response.status_code == 422 and "annotator_id" in response.json()["detail"]
        assert client.get("/api/triplets/next").status_code == 422
        response = send(client, stranger, triplet, 0, "x1")
        assert response.status_code == 404 and "unknown annotator_id" in response.json()["detail"]
        response = send(client, annotator, triplet, 0, "x2", triplet_id=uuid.uuid4().hex)
        assert response.status_code == 404 and "unknown triplet_id" in response.json()["detail"]
        response = send(client, annotator, triplet, 0, "x3", odd_one_out="0123456789abcdef")
        assert response.status_code == 422 and "odd_one_out" in response.json()["detail"]
        other = next(c for c in running.survey.library.clips if c not in {x["clip_id"] for x in triplet["clips"]})
        response = send(client, annotator, triplet, 0, "x4", odd_one_out=other)  # a real clip, not of this triplet
        assert response.status_code == 422
        assert stored(running) == before
        assert send(client, annotator, triplet, 0, "x5").status_code == 201  # the same ids, well-formed: stored


def test_another_listeners_triplet_is_refused(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        alice, bob = listener(client), listener(client)
        alices = next_triplet(client, alice)
        next_triplet(client, bob)
        before = stored(running)
        response = send(client, bob, alices, 0, "steal")
        assert response.status_code == 403 and "another annotator" in response.json()["detail"]
        assert stored(running) == before
        assert send(client, alice, alices, 0, "steal").status_code == 201


@pytest.mark.parametrize("body, content_type, status", [
    (b'{"annotator_id": "', "application/json", 400),  # truncated JSON
    (b"{'annotator_id': 1}", "application/json", 400),  # not JSON
    (b"[1, 2, 3]", "application/json", 422),  # JSON, but not an object
    (b"null", "application/json", 422),
    (b"annotator_id=1", "application/x-www-form-urlencoded", 422),
    (b"hello", "text/plain", 422),
    (b"", "application/json", 422),
])
def test_malformed_bodies_are_refused_and_nothing_is_written(start_survey, tmp_path, body, content_type, status):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}")
    with httpx.Client(base_url=running.url) as client:
        listener(client)
        before = stored(running)
        response = client.post("/api/answers", content=body, headers={"Content-Type": content_type})
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert ("malformed JSON" in detail) if status == 400 else detail.startswith("invalid request")
        assert stored(running) == before


def test_well_formed_json_with_wrong_fields_is_refused(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        triplet = next_triplet(client, annotator)
        good = {"annotator_id": annotator, "triplet_id": triplet["triplet_id"],
                "odd_one_out": triplet["clips"][0]["clip_id"], "client_answer_id": "ok"}
        before = stored(running)
        bad_bodies = [
            {k: v for k, v in good.items() if k != "odd_one_out"},  # "can't decide" must be an explicit null
            {k: v for k, v in good.items() if k != "client_answer_id"},
            {**good, "extra": 1},
            {**good, "odd_one_out": 0},
            {**good, "annotator_id": int(annotator[:8], 16)},
            {**good, "client_answer_id": "x" * 65},
            {**good, "client_answer_id": "<script>"},
            {**good, "triplet_id": triplet["triplet_id"].upper()},
        ]
        for body in bad_bodies:
            response = client.post("/api/answers", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"].startswith("invalid request")
        huge = client.post("/api/answers", json={**good, "padding": "x" * 20_000})
        assert huge.status_code == 413
        assert stored(running) == before
        assert client.post("/api/answers", json=good).status_code == 201


def test_export_and_stats_need_the_admin_token(start_survey, database_url, monkeypatch):
    running = start_survey(database_url)
    calls = []
    real = app_module.hmac.compare_digest
    monkeypatch.setattr(app_module.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    with httpx.Client(base_url=running.url) as client:
        for route in ("/api/export?format=csv", "/api/stats"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"},
                            {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, {"Authorization": ADMIN_TOKEN},
                            {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert ADMIN_TOKEN not in response.text
            assert client.get(route, headers=ADMIN).status_code == 200
        assert client.get("/api/export", params={"format": "xlsx"}, headers=ADMIN).status_code == 400
    assert calls and all(b == ADMIN_TOKEN.encode() for _, b in calls)  # every check went through compare_digest


def test_an_answer_is_durable_when_the_reply_arrives(start_survey, database_url):
    running = start_survey(database_url)
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        triplet = next_triplet(client, annotator)
        response = send(client, annotator, triplet, 2, "durable")
        assert response.status_code == 201
    # A separate engine, with its own connection, sees the committed row at once.
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        row = connection.execute(text("SELECT odd_one_out_clip, client_answer_id FROM answers")).one()
        assert tuple(row) == (triplet["clips"][2]["clip_id"], "durable")
    engine.dispose()
    if database_url.startswith("sqlite"):
        with running.survey.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    else:
        with running.survey.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_the_rate_limit_answers_429_per_listener(start_survey, tmp_path):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}", rate_burst=3, rate_per_second=0.01)
    with httpx.Client(base_url=running.url) as client:
        alice, bob = listener(client), listener(client)
        triplet = next_triplet(client, alice)
        assert send(client, alice, triplet, 0, "one").status_code == 201
        next_triplet(client, alice)  # third request: the bucket is empty now
        before = stored(running)
        response = client.get("/api/triplets/next", params={"annotator_id": alice})
        assert response.status_code == 429 and "too many requests" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
        response = send(client, alice, triplet, 1, "two")
        assert response.status_code == 429
        assert stored(running) == before
        assert next_triplet(client, bob)["triplet_id"]  # another listener has their own bucket


def test_clips_are_served_with_http_range(start_survey, tmp_path):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}")
    clip = next(iter(running.survey.library.clips.values()))
    data = clip.path.read_bytes()
    with httpx.Client(base_url=running.url) as client:
        whole = client.get(f"/api/clips/{clip.clip_id}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "audio/flac" and whole.headers["accept-ranges"] == "bytes"
        part = client.get(f"/api/clips/{clip.clip_id}", headers={"Range": "bytes=100-299"})
        assert part.status_code == 206 and part.content == data[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
        tail = client.get(f"/api/clips/{clip.clip_id}", headers={"Range": "bytes=-64"})
        assert tail.status_code == 206 and tail.content == data[-64:]
        rest = client.get(f"/api/clips/{clip.clip_id}", headers={"Range": f"bytes={len(data) - 10}-"})
        assert rest.status_code == 206 and rest.content == data[-10:]
        beyond = client.get(f"/api/clips/{clip.clip_id}", headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
        head = client.head(f"/api/clips/{clip.clip_id}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    # The clip is the song's body: 15 s from 5 s on, equal to the decoded song there.
    samples, rate = sf.read(io.BytesIO(whole.content), dtype="float32")
    assert rate == 22050 and samples.ndim == 1 and samples.shape[0] == 15 * 22050
    song = load_audio(running.survey.manifest.set_index("track_id").loc[clip.track_id, "path"], 22050)
    start = int(round(clip.start_s * 22050))
    assert clip.start_s >= 5.0
    np.testing.assert_allclose(samples, song[start : start + samples.shape[0]], atol=2.0 / 32768)


TRAVERSALS = [
    "/api/clips/../../../../etc/passwd",
    "/api/clips/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/clips/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/clips/..%252F..%252Fetc%252Fpasswd",
    "/api/clips/%2Fetc%2Fpasswd",
    "/api/clips//etc/passwd",
    "/api/clips/..",
    "/api/clips/%2e%2e",
    "/api/clips/....//....//etc/passwd",
    "/api/clips/..\\..\\..\\etc\\passwd",
    "/api/clips/%00",
    "/api/clips/ffffffffffffffff",
    "/api/clips/FFFFFFFFFFFFFFFF",
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2fapp.py",
    "/static/../app.py",
]


def test_no_file_outside_the_manifest_can_be_fetched(start_survey, tmp_path, clip_cache):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}")
    # A file in the clip cache that is not a clip of the manifest is not served either.
    planted = clip_cache / "ffffffffffffffff.flac"
    planted.write_bytes(b"root:x:0:0:planted")
    song = running.survey.manifest["path"].iloc[0]
    valid = next(iter(running.survey.library.clips))
    paths = TRAVERSALS + [f"/api/clips/{valid}/../../../../etc/passwd", f"/api/clips/{valid}%2F..%2F..%2Fapp.py",
                          f"/api/clips/{song}", "/api/clips/" + song.replace("/", "%2F")]
    for path in paths:
        connection = http.client.HTTPConnection("127.0.0.1", running.server.port, timeout=10)
        connection.request("GET", path)  # sent as is: http.client normalises nothing
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status in (400, 404), (path, response.status)
        assert b"root:" not in body and b"import" not in body and b"fLaC" not in body, path
    planted.unlink()


def test_pages_escape_what_they_show(start_survey, demo_manifest, tmp_path):
    evil = demo_manifest[demo_manifest["split"] == "train"].head(4).copy()
    evil["artist"] = '<script>alert("artist")</script>'
    evil["album"] = '"><img src=x onerror=alert(1)>'
    evil["genre"] = "Rock & <b>Roll</b>"
    path = tmp_path / "evil_manifest.csv"
    manifest_io.write(evil, path)
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}", manifest_path=path, questions_per_session=2,
                           repeat_fraction=0.0, title="<i>Odd</i> one out")
    with httpx.Client(base_url=running.url) as client:
        for page in ("/", "/listen"):
            html = client.get(page)
            assert html.status_code == 200 and "<i>Odd</i>" not in html.text
            assert "&lt;i&gt;Odd&lt;/i&gt; one out" in html.text
            assert "script-src 'self'" in html.headers["content-security-policy"]
        annotator = listener(client)
        assert "The songs you heard" not in client.get("/thanks", params={"annotator_id": annotator}).text
        for i in range(2):
            assert send(client, annotator, next_triplet(client, annotator), 0, f"e{i}").status_code == 201
        html = client.get("/thanks", params={"annotator_id": annotator}).text
    assert "The songs you heard" in html
    assert "&lt;script&gt;alert(&#34;artist&#34;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html and "Rock &amp; &lt;b&gt;Roll&lt;/b&gt;" in html
    assert "<script>alert" not in html and "<img" not in html and "<b>Roll" not in html
    assert html.count("<script") == 1  # only the survey's own script tag


def test_every_new_question_keeps_to_one_split_and_covers_songs_evenly(start_survey, tmp_path):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}", questions_per_session=20, repeat_fraction=0.0,
                           overlap_fraction=0.0)
    library = running.survey.library
    splits = running.survey.splits
    with httpx.Client(base_url=running.url) as client:
        for n in range(3):
            annotator = listener(client)
            asked = []
            for i in range(20):
                triplet = next_triplet(client, annotator)
                songs = [library.get(c["clip_id"]).track_id for c in triplet["clips"]]
                assert len({splits[s] for s in songs}) == 1
                asked.append(frozenset(songs))
                assert send(client, annotator, triplet, i % 3, f"c{i}").status_code == 201
            assert len(set(asked)) == 20  # nobody is asked the same question twice (without repeats)
        stats = client.get("/api/stats", headers=ADMIN).json()
    assert stats["songs"]["n"] == 12 and stats["songs"]["mean_exposures"] == 3 * 20 * 3 / 12
    with running.survey.engine.connect() as connection:
        exposures = dict(connection.execute(text("SELECT track_id, exposures FROM songs")).all())
    # Even within each split. (The 4 val songs make only 4 questions, so a listener soon has
    # none of them left to answer and the 8 train songs take the rest: the splits differ.)
    for split in ("train", "val"):
        counts = [n for t, n in exposures.items() if splits[t] == split]
        assert len(counts) == {"train": 8, "val": 4}[split] and max(counts) - min(counts) <= 2, (split, counts)


def test_stats_flag_a_listener_whose_repeats_disagree(start_survey, database_url, tmp_path):
    running = start_survey(database_url, questions_per_session=10, repeat_fraction=0.2, overlap_fraction=0.9)
    with httpx.Client(base_url=running.url) as client:
        careless, careful = listener(client), listener(client)
        for annotator in (careful, careless):
            seen: dict[frozenset, str] = {}
            for i in range(10):
                triplet = next_triplet(client, annotator)
                ids = [c["clip_id"] for c in triplet["clips"]]
                key = frozenset(ids)
                if key in seen:  # a repeat: the careful listener answers as before, the careless one not
                    odd = seen[key] if annotator == careful else next(c for c in ids if c != seen[key])
                else:
                    odd = min(ids)  # everyone picks by the same rule, so listeners agree on shared questions
                    seen[key] = odd
                response = send(client, annotator, triplet, ids.index(odd), f"s{i}")
                assert response.status_code == 201
        stats = client.get("/api/stats", params={"questions": "true"}, headers=ADMIN).json()
        export_all = client.get("/api/export", headers=ADMIN).text
        export_reliable = client.get("/api/export", params={"exclude_flagged": "true"}, headers=ADMIN).text
        export_firsts = client.get("/api/export", params={"include_repeats": "false"}, headers=ADMIN).text
    rows = {r["annotator"]: r for r in stats["per_annotator"]}
    assert rows[careful]["repeats"] == 2 and rows[careful]["repeat_agreement"] == 1.0 and not rows[careful]["flagged"]
    assert rows[careless]["repeats"] == 2 and rows[careless]["repeat_agreement"] == 0.0 and rows[careless]["flagged"]
    assert stats["flagged_annotators"] == [careless]
    assert stats["answers"] == 20 and stats["repeats"] == 4 and stats["repeat_agreement"] == 0.5
    # The careless listener was asked some of the careful one's questions; both picked alike there.
    assert stats["questions_with_majority"] >= 1 and stats["majority_agreement"] == 1.0
    assert rows[careless]["agreement_with_others"] == 1.0
    shared = [q for q in stats["questions_detail"] if q["answers"] == 2]
    assert shared and all(q["agreement"] == 1.0 and q["majority"] in q["songs"] for q in shared)
    assert sum(stats["answers_per_question"].values()) == stats["questions"]
    assert len(export_all.splitlines()) == 21
    assert len(export_reliable.splitlines()) == 11 and careless not in export_reliable
    assert len(export_firsts.splitlines()) == 17


def test_the_uncertainty_mode_asks_the_question_the_model_is_least_sure_of(start_survey, survey_manifest, tmp_path):
    manifest = manifest_io.read(survey_manifest)
    ids = manifest["track_id"].tolist()
    embeddings = pd.DataFrame(np.random.default_rng(3).normal(size=(len(ids), 4)), columns=[f"e{i}" for i in range(4)])
    embeddings.insert(0, "track_id", ids)
    path = tmp_path / "embeddings.csv"
    embeddings.to_csv(path, index=False)
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}", embeddings_path=path, repeat_fraction=0.0,
                           overlap_fraction=0.0, questions_per_session=6, uncertainty_pool=12)
    vectors = {t: embeddings.iloc[i, 1:].to_numpy(float) for i, t in enumerate(ids)}
    library, splits = running.survey.library, running.survey.splits

    def margin(songs) -> float:
        return uncertainty_margin(np.stack([vectors[s] for s in songs]))

    def least_sure_with(first, asked) -> float:
        """The smallest margin of a question of ``first`` and two songs of its split not asked yet."""
        others = [t for t in ids if t != first and splits[t] == splits[first]]
        return min(margin((first, a, b)) for j, a in enumerate(others) for b in others[j + 1:]
                   if frozenset((first, a, b)) not in asked)

    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        asked, margins = set(), []
        for i in range(6):
            triplet = next_triplet(client, annotator)
            songs = [library.get(c["clip_id"]).track_id for c in triplet["clips"]]
            # One of the three (the least-asked song) started the question; its companions are the pair
            # of its split with the smallest margin.
            assert any(margin(songs) == pytest.approx(least_sure_with(first, asked), abs=1e-12) for first in songs)
            margins.append(margin(songs))
            asked.add(frozenset(songs))
            assert send(client, annotator, triplet, 0, f"u{i}").status_code == 201
    all_margins = [margin(q) for q in itertools.combinations(ids, 3) if len({splits[t] for t in q}) == 1]
    assert np.mean(margins) < np.percentile(all_margins, 25)


def test_a_song_that_cannot_be_decoded_is_left_out(start_survey, survey_manifest, tmp_path, caplog):
    manifest = manifest_io.read(survey_manifest)
    broken = tmp_path / "broken.opus"
    broken.write_bytes(b"OggS" + bytes(range(256)) * 8)
    manifest.loc[0, "path"] = str(broken)
    path = tmp_path / "manifest.csv"
    manifest_io.write(manifest, path)
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}", manifest_path=path, repeat_fraction=0.0)
    assert f"skipping {manifest.loc[0, 'track_id']} ({broken})" in caplog.text
    assert len(running.survey.library) == 11 and manifest.loc[0, "track_id"] not in running.survey.splits
    with httpx.Client(base_url=running.url) as client:
        annotator = listener(client)
        for i in range(12):
            triplet = next_triplet(client, annotator)
            songs = {running.survey.library.get(c["clip_id"]).track_id for c in triplet["clips"]}
            assert manifest.loc[0, "track_id"] not in songs
            assert send(client, annotator, triplet, 0, f"b{i}").status_code == 201
        assert client.get("/api/stats", headers=ADMIN).json()["songs"] == {
            "n": 11, "skipped": 1, "min_exposures": pytest.approx(3, abs=2), "max_exposures": pytest.approx(3, abs=2),
            "mean_exposures": pytest.approx(36 / 11)}


def test_an_open_question_survives_a_restart_with_new_snippets_or_songs(start_survey, database_url, survey_manifest,
                                                                       tmp_path):
    first = start_survey(database_url, repeat_fraction=0.0)
    with httpx.Client(base_url=first.url) as client:
        annotator = listener(client)
        triplet = next_triplet(client, annotator)
    songs = [first.survey.library.get(c["clip_id"]).track_id for c in triplet["clips"]]
    first.stop()
    # Restarted with 12 s snippets: the same open question, its clips re-rendered and served.
    second = start_survey(database_url, repeat_fraction=0.0, snippet_seconds=12.0)
    with httpx.Client(base_url=second.url) as client:
        again = next_triplet(client, annotator)
        assert again["triplet_id"] == triplet["triplet_id"]
        assert [second.survey.library.get(c["clip_id"]).track_id for c in again["clips"]] == songs
        for clip in again["clips"]:
            assert clip["clip_id"] not in {c["clip_id"] for c in triplet["clips"]}
            audio = client.get(clip["audio_url"])
            assert audio.status_code == 200 and sf.info(io.BytesIO(audio.content)).duration == pytest.approx(12.0)
    second.stop()
    # Restarted without one of its songs: the open question is replaced, and the counts stay right.
    manifest = manifest_io.read(survey_manifest)
    path = tmp_path / "fewer.csv"
    manifest_io.write(manifest[manifest["track_id"] != songs[0]], path)
    third = start_survey(database_url, repeat_fraction=0.0, manifest_path=path)
    with httpx.Client(base_url=third.url) as client:
        replaced = next_triplet(client, annotator)
        assert replaced["triplet_id"] != triplet["triplet_id"] and replaced["position"] == 1
        assert songs[0] not in {third.survey.library.get(c["clip_id"]).track_id for c in replaced["clips"]}
        assert send(client, annotator, replaced, 1, "after-restart").status_code == 201
    assert stored(third)["triplets"] == 1 and stored(third)["answers"] == 1
    with third.survey.engine.connect() as connection:
        assert connection.execute(text("SELECT sum(exposures) FROM songs")).scalar() == 3
        assert connection.execute(text("SELECT sum(n_asked), sum(n_answers) FROM questions")).one() == (1, 1)


def test_health(start_survey, tmp_path):
    running = start_survey(f"sqlite:///{tmp_path / 's.sqlite'}")
    response = httpx.get(f"{running.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "songs": 12}
    assert response.headers["x-content-type-options"] == "nosniff"
    for page in ("/", "/listen", "/thanks", "/healthz"):
        assert httpx.head(running.url + page).status_code == 200
