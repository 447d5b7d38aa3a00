"""The one command that starts the survey, ``make annotate``, and answers that survive a crash."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from tests.annotate_support import ADMIN, ADMIN_TOKEN, free_port


def launch(command: list[str], cwd: Path, log: Path, **env) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != "SURVEY_ADMIN_TOKEN"}
    environment.update(PYTHONPATH=str(REPO), **env)
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=cwd, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_until_up(process: subprocess.Popen, url: str, log: Path, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the survey exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(process, signal.SIGKILL)
    pytest.fail(f"the survey did not come up:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen, how: int = signal.SIGTERM) -> int:
    """Signal the process group started by :func:`launch` and wait for it."""
    if process.poll() is None:
        os.killpg(process.pid, how)
    return process.wait(timeout=30)


def answer(url: str, annotator: str, index: int) -> dict:
    with httpx.Client(base_url=url) as client:
        triplet = client.get("/api/triplets/next", params={"annotator_id": annotator}).json()
        body = {"annotator_id": annotator, "triplet_id": triplet["triplet_id"],
                "odd_one_out": triplet["clips"][index % 3]["clip_id"] if index % 2 else None,
                "client_answer_id": f"cli-{index}"}
        response = client.post("/api/answers", json=body)
        assert response.status_code == 201, response.text
        return body


def test_the_command_serves_the_demo_and_answers_survive_a_crash(tmp_path, clip_cache):
    """No manifest in the working folder: the demo songs, built in memory. SIGKILL after five answers."""
    port, log = free_port(), tmp_path / "survey.log"
    database = tmp_path / "survey.sqlite"
    command = [sys.executable, "-m", "songfeel.annotate", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", f"sqlite:///{database}", "--admin-token", ADMIN_TOKEN,
               "--clip-cache", str(clip_cache), "--rate-burst", "1000"]
    url = f"http://127.0.0.1:{port}"
    process = launch(command, tmp_path, log)
    try:
        assert wait_until_up(process, url, log)["songs"] == 28
        annotator = httpx.post(f"{url}/api/sessions").json()["annotator_id"]
        sent = [answer(url, annotator, i) for i in range(5)]
    finally:
        stop(process, signal.SIGKILL)  # no shutdown, no flush: what was acknowledged must be on disk
    assert "no manifest at data/manifest.csv: survey of the 28 demo songs" in log.read_text()
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT client_answer_id, odd_one_out_clip FROM answers ORDER BY id").fetchall()
    assert rows == [(b["client_answer_id"], b["odd_one_out"]) for b in sent]

    process = launch(command, tmp_path, log)  # the same database again: migrations are a no-op
    try:
        wait_until_up(process, url, log)
        export = httpx.get(f"{url}/api/export", params={"format": "csv"}, headers=ADMIN)
        assert export.status_code == 200 and len(export.text.splitlines()) == 6
        assert httpx.get(f"{url}/api/triplets/next", params={"annotator_id": annotator}).json()["position"] == 6
    finally:
        assert stop(process, signal.SIGINT) == 0  # a clean shutdown on Ctrl-C


def test_make_annotate_runs_the_survey(tmp_path, clip_cache, survey_manifest):
    port, log = free_port(), tmp_path / "make.log"
    extra = f"--clip-cache {clip_cache} --manifest {survey_manifest} --questions 3"
    command = ["make", "-s", "-C", str(REPO), "annotate", f"PYTHON={sys.executable}", f"SURVEY_PORT={port}",
               f"SURVEY_DATABASE_URL=sqlite:///{tmp_path / 'survey.sqlite'}", f"SURVEY_ARGS={extra}"]
    process = launch(command, tmp_path, log, SURVEY_ADMIN_TOKEN=ADMIN_TOKEN)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_up(process, url, log)["songs"] == 12
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "There are 3 questions" in page.text
        assert httpx.get(f"{url}/api/stats", headers=ADMIN).status_code == 200  # the token came from the environment
    finally:
        stop(process, signal.SIGINT)


@pytest.mark.parametrize("args, message", [
    ([], "admin_token must not be empty"),
    (["--admin-token", "x" * 20, "--snippet-seconds", "30"], "snippet_seconds must lie in [10, 20]"),
    (["--admin-token", "x" * 20, "--manifest", "no/such/manifest.csv"], "manifest not found"),
    (["--admin-token", "x" * 20, "--database-url", "mysql://u@h/db"], "unsupported database"),
])
def test_the_command_refuses_bad_options(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "songfeel.annotate", *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120,
                            env={**{k: v for k, v in os.environ.items() if k != "SURVEY_ADMIN_TOKEN"},
                                 "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and message in result.stderr, result.stderr
