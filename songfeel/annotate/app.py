"""The survey's web app (FastAPI): pages for listeners, a JSON API, audio with HTTP Range.

Routes:

=================================  =========================================================
``GET /``                          consent and instructions
``GET /listen``                    one question at a time (vanilla JS in ``static/survey.js``)
``GET /thanks``                    thank-you page (lists the songs heard once complete)
``POST /api/sessions``             start an anonymous listener -> 201 ``{"annotator_id"}``
``GET /api/triplets/next``         the listener's current question
``POST /api/answers``              store an answer (idempotent by ``client_answer_id``)
``GET /api/clips/{clip_id}``       a snippet (FLAC), with HTTP Range (206 / 416)
``GET /api/export?format=csv``     admin: every answer, songfeel's human-answer CSV
``GET /api/stats``                 admin: answers per question, agreement, reliability
``GET /healthz``                   liveness and row counts
=================================  =========================================================

Errors are JSON ``{"detail": message}`` with a 4xx status; nothing is written
when a request fails.
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Annotated

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from songfeel.annotate.ratelimit import retry_after
from songfeel.annotate.settings import Settings
from songfeel.annotate.survey import RateLimited, Survey, SurveyError

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

HEX32 = r"^[0-9a-f]{32}$"
CLIP_ID = r"^[0-9a-f]{16}$"
CLIENT_ID = r"^[A-Za-z0-9_-]{1,64}$"

#: Content-Security-Policy of every response: same-origin scripts, styles and media only, no inline code.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class AnswerIn(BaseModel):
    """Body of ``POST /api/answers``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    annotator_id: Annotated[str, StringConstraints(pattern=HEX32)]
    triplet_id: Annotated[str, StringConstraints(pattern=HEX32)]
    odd_one_out: Annotated[str, StringConstraints(pattern=CLIP_ID)] | None
    client_answer_id: Annotated[str, StringConstraints(pattern=CLIENT_ID)]


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in SECURITY_HEADERS if name not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """Status and message of a request FastAPI could not validate: 400 for malformed JSON, else 422."""
    errors = exc.errors()
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        reason = (malformed[0].get("ctx") or {}).get("error", "JSON decode error")
        return 400, f"malformed JSON in the request body: {reason}"
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return 422, "invalid request: " + "; ".join(parts)


def create_app(settings: Settings, survey: Survey | None = None) -> FastAPI:
    """The survey app: loads songs and clips, migrates the database, and serves them.

    Args:
        settings: see :class:`Settings`.
        survey: an already started survey (tests); None starts one from ``settings``.

    Raises:
        ManifestError, ValueError: see :meth:`Survey.start`.
    """
    survey = survey or Survey.start(settings)
    app = FastAPI(title="songfeel listening survey", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.survey = survey
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    no_store = {"Cache-Control": "no-store"}

    @app.exception_handler(SurveyError)
    async def survey_error(_request: Request, exc: SurveyError) -> JSONResponse:
        headers = dict(no_store)
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = retry_after(exc.retry_after)
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return JSONResponse({"detail": message}, status_code=status, headers=no_store)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    def require_admin(request: Request) -> None:
        """Checks ``Authorization: Bearer <admin token>`` in constant time; 401 otherwise."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, settings.admin_token.encode()):
            raise HTTPException(401, "admin token required: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})

    def page(request: Request, name: str, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"title": settings.title, **context}, headers=no_store)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def consent(request: Request):
        return page(request, "consent.html", total=settings.questions_per_session,
                    snippet_seconds=settings.snippet_seconds)

    @app.api_route("/listen", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def listen(request: Request):
        return page(request, "listen.html", total=settings.questions_per_session)

    @app.api_route("/thanks", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def thanks(request: Request, annotator_id: str = ""):
        heard = None
        if len(annotator_id) == 32 and all(c in "0123456789abcdef" for c in annotator_id):
            heard = survey.heard_songs(annotator_id)
        return page(request, "thanks.html", heard=heard)

    @app.post("/api/sessions", status_code=201)
    def start_session():
        annotator_id = survey.new_annotator()
        return JSONResponse({"annotator_id": annotator_id, "total": settings.questions_per_session},
                            status_code=201, headers=no_store)

    @app.get("/api/triplets/next")
    def next_triplet(annotator_id: Annotated[str, Query(pattern=HEX32)]):
        return JSONResponse(survey.next_triplet(annotator_id), headers=no_store)

    @app.post("/api/answers")
    def answer(body: AnswerIn):
        stored, created = survey.record_answer(body.annotator_id, body.triplet_id, body.odd_one_out,
                                               body.client_answer_id)
        return JSONResponse(stored, status_code=201 if created else 200, headers=no_store)

    @app.api_route("/api/clips/{clip_id}", methods=["GET", "HEAD"])
    def clip(clip_id: str):
        found = survey.library.get(clip_id)
        if found is None:
            raise HTTPException(404, "unknown clip")
        return FileResponse(found.path, media_type="audio/flac", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/export", dependencies=[Depends(require_admin)])
    def export(format: str = "csv", include_repeats: bool = True, exclude_flagged: bool = False):  # noqa: A002
        if format != "csv":
            raise HTTPException(400, "unsupported format: only format=csv")
        text = survey.export_csv(include_repeats=include_repeats, exclude_flagged=exclude_flagged)
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={**no_store, "Content-Disposition": 'attachment; filename="human_answers.csv"'})

    @app.get("/api/stats", dependencies=[Depends(require_admin)])
    def stats(questions: bool = False):
        return JSONResponse(survey.stats(with_questions=questions), headers=no_store)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    def health():
        return JSONResponse({"status": "ok", "songs": len(survey.library)}, headers=no_store)

    return app


__all__ = ["AnswerIn", "create_app"]
