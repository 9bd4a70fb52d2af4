"""The on-demand scoring service behind `leadscore serve`: a FastAPI app run by uvicorn.

Endpoints: `GET /health`, `GET /leads/{lead_id}/score` (the lead is read from the source),
`GET /leads/{lead_id}/changes`, `POST /score` (a lead posted as JSON) and `POST /events`
(activities of known leads, stored and the leads rescored at once). The champion model, the
rules and the reference population for percentiles and tiers are loaded once at startup;
the reference is re-read every few minutes, so the next nightly run is picked up, and the
champion alias is polled, so a newly promoted model is served without a restart (`/health`
shows the version in service). One lead is scored by the batch's recipe compiled for one
row (`leadscore.scoring.single`). Without a champion the rules score alone, as the batch
does (no model yet, or `--rules-only`; a champion gone missing where a model's scores were
published stops the service from starting).

Privacy: request bodies are never logged, error responses never echo submitted values,
and the e-mail address is reduced to its domain before the model sees it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from fastapi import BackgroundTasks, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from leadscore.config import ProjectConfig
from leadscore.data.rules import load_rules
from leadscore.errors import LeadscoreError
from leadscore.i18n import Words
from leadscore.io import alerts
from leadscore.io.changes import reasons, score_change
from leadscore.io.events import MAX_EVENT_ID, Event
from leadscore.io.keys import KeyStore
from leadscore.io.publish import RULES_ONLY_MODEL, PublishedScores, ScoreTables
from leadscore.lifecycle.registry import Champion, Registry, choose_scoring, scoring_entry
from leadscore.scoring import ondemand
from leadscore.scoring.inputs import now
from leadscore.scoring.ondemand import LeadNotFoundError, LeadNotOpenError, PayloadError, Population
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.single import OnDemand

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_ACTIVITIES = 1_000
MAX_TEXT = 500
#: How often the reference population (the latest published run) is re-read.
REFERENCE_REFRESH_SECONDS = 300.0


def _timestamp_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(
            "must be ISO 8601 text with a UTC offset, e.g. 2026-03-01T14:05:00Z (epoch "
            "numbers are refused: seconds or milliseconds cannot be told apart)"
        )
    if len(value) > 40:
        raise ValueError("is too long for a timestamp")
    return value


def _attribute_value(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"is longer than {MAX_TEXT} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be text, a number or null")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


#: A point in time: ISO 8601 text with an offset (a naive time is ambiguous, a number more so).
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_text)]
AttributeValue = Annotated[str | float | None, BeforeValidator(_attribute_value)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ActivityIn(BaseModel):
    """One activity of the lead: when, what, and its detail (URL path, asset, campaign)."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: Timestamp
    activity_type: Annotated[
        str, StringConstraints(min_length=1, max_length=100), AfterValidator(_not_blank)
    ]
    detail: Annotated[str, StringConstraints(max_length=1000)] | None = None


class LeadIn(BaseModel):
    """A lead to score: its fields, its recent activities and, optionally, the moment."""

    model_config = ConfigDict(extra="forbid")

    created_at: Timestamp | None = Field(None, description="When the lead was created.")
    attributes: dict[FieldName, AttributeValue] = Field(
        default_factory=dict,
        max_length=100,
        description="Lead fields by their source column name (see GET /health: fields).",
    )
    activities: list[ActivityIn] = Field(default_factory=list, max_length=MAX_ACTIVITIES)
    as_of: Timestamp | None = Field(None, description="Score as of this moment (default: now).")


class ScoreOut(BaseModel):
    """One lead's score, as the nightly batch would publish it, plus what it is ranked in."""

    lead_id: int | str | None
    as_of: str
    conversion_probability: float | None
    percentile: float | None
    tier: str | None
    rule_score: float
    is_mql: bool
    rules_fired: list[str]
    reasons_up: list[str]
    reasons_down: list[str]
    model_name: str
    model_version: str | None
    reference: dict[str, Any] | None
    since_published: dict[str, Any] | None = Field(
        None,
        description="The lead's newest published score (as_of) and what differs from it now, "
        "in words (GET by id only).",
    )


def _lead_id(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be the lead's id, as text or a whole number")
    text = str(value)
    if not text.strip() or len(text) > ondemand.MAX_LEAD_ID_LENGTH:
        raise ValueError(f"must be 1 to {ondemand.MAX_LEAD_ID_LENGTH} characters, not blank")
    return text


class EventIn(ActivityIn):
    """An activity of a known lead, as it happened; `event_id` is its idempotency key (else
    the event's own content is: the same lead, time, type and detail count once)."""

    lead_id: Annotated[str, BeforeValidator(_lead_id)]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_EVENT_ID)] | None = None


class EventsIn(BaseModel):
    """One or more events (a list of one is one)."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_ACTIVITIES)


class EventsOut(BaseModel):
    """What was stored and the new scores of the leads it changed."""

    received: int
    stored: int
    duplicates: int
    rescored: list[ScoreOut]
    alerts_queued: int = Field(
        description="Hot-lead alerts written to the outbox (sent right after this answer)."
    )
    not_scored: list[dict[str, Any]] = Field(
        description="Leads whose events were stored but who are not open (converted, too "
        "old), with why."
    )


class ChangesOut(BaseModel):
    """Why a lead's score changed: its two newest published scores, compared in words."""

    lead_id: int | str
    latest: dict[str, Any]
    previous: dict[str, Any] | None
    changes: list[str]


@dataclass
class ServiceState:
    """What the service loads once: the champion (None: the rules alone) and its scorer; the
    reference, refreshed."""

    config: ProjectConfig
    champion: Champion | None
    scorer: Scorer
    loaded_at: pd.Timestamp
    population: Population | None
    published: PublishedScores | None = None
    keys: KeyStore | None = None
    #: One lead at a time: compiled where the model and the source allow it.
    one: OnDemand | None = None

    def identity(self) -> dict[str, str | None]:
        """The model in service: its name, version and run (the rules: "rules", None)."""
        if self.champion is None:
            return {"model_name": RULES_ONLY_MODEL, "model_version": None, "run_id": None}
        entry = self.champion.entry
        return {"model_name": entry.name, "model_version": entry.version, "run_id": entry.run_id}


def check_champion(config: ProjectConfig, rules_only: bool = False) -> None:
    """Fail before the server starts when it cannot tell what to serve (names the fix); the
    model itself is loaded once, when the app starts."""
    scoring_entry(config, rules_only)


def load_state(config: ProjectConfig, rules_only: bool = False) -> ServiceState:
    """Load the champion (or choose the rules alone), the rules and the reference population
    (once, at startup)."""
    champion, why = choose_scoring(config, rules_only)
    rules = load_rules(config.rules_path)
    if champion is None:
        log.warning("rules-only scoring: %s", why)
        scorer = Scorer.rules_only(rules, config)
    else:
        scorer = champion.scorer(rules, config)
    population = ondemand.load_population(config, scorer.model)
    published = PublishedScores(config.publish_uri, ScoreTables.of(config))
    keys = (
        KeyStore(config.publish_uri, config.service.keys_table)
        if config.service.auth == "keys"
        else None
    )
    return ServiceState(
        config, champion, scorer, now(), population, published, keys, OnDemand(scorer)
    )


def load_model(state: ServiceState, champion: Champion) -> ServiceState:
    """`state` serving `champion` instead: its scorer and reference, the rest shared."""
    scorer = champion.scorer(load_rules(state.config.rules_path), state.config)
    population = ondemand.load_population(state.config, scorer.model)
    return dataclasses.replace(
        state,
        champion=champion,
        scorer=scorer,
        loaded_at=now(),
        population=population,
        one=OnDemand(scorer),
    )


def newer_champion(state: ServiceState, failed: set[str] = frozenset()) -> Champion | None:
    """The champion, loaded, when the registry's alias points at another version than the
    one in service (and not at one in `failed`); None while it is the same (or the service
    scores by the rules). A failure to load carries the version (`exc.version`)."""
    if state.champion is None:
        return None
    registry = Registry.of(state.config)
    entry = registry.champion()
    if entry is None or entry.version in (state.champion.entry.version, *failed):
        return None
    try:
        return registry.load(entry)
    except Exception as exc:
        exc.version = entry.version
        raise


async def _follow_champion(app: FastAPI, every_seconds: float) -> None:
    """Poll the champion alias; swap in a newly promoted model without a restart. A version
    that fails to load is not tried again (the service keeps the one it has)."""
    failed: set[str] = set()
    while True:
        await asyncio.sleep(every_seconds)
        state: ServiceState = app.state.scoring
        try:
            champion = await asyncio.to_thread(newer_champion, state, failed)
            if champion is None:
                continue
            try:
                fresh = await asyncio.to_thread(load_model, state, champion)
            except Exception as exc:
                exc.version = champion.entry.version
                raise
        except Exception as exc:  # keep serving the model we have
            version = getattr(exc, "version", None)
            if version is not None:
                failed.add(version)
            log.warning("could not check or load the champion: %s", type(exc).__name__)
            continue
        app.state.scoring = fresh  # one assignment: a request sees the old or the new state
        if state.one is not None:  # after the requests already under way are done
            app.state.retired.append(state.one)
            asyncio.get_running_loop().call_later(60, state.one.close)
        log.info(
            "now serving %s version %s (was %s)",
            champion.entry.name,
            champion.entry.version,
            state.champion.entry.version if state.champion else "(rules only)",
        )


async def _refresh_reference(app: FastAPI, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        state: ServiceState = app.state.scoring
        try:
            state.population = await asyncio.to_thread(
                ondemand.load_population, state.config, state.scorer.model
            )
        except Exception as exc:  # keep serving with the reference we have
            log.warning("could not refresh the reference population: %s", type(exc).__name__)


def _error(status: int, problem: str, fix: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": problem, "fix": fix, **extra})


def _scored(
    state: ServiceState, work: Callable[[Population | None], dict[str, Any]]
) -> JSONResponse | dict[str, Any]:
    """Run one scoring; map errors to statuses; unexpected ones are logged without values."""
    population = state.population
    try:
        scores = work(population)
    except LeadNotFoundError as exc:
        return _error(404, exc.problem, exc.fix)
    except LeadNotOpenError as exc:
        return _error(409, exc.problem, exc.fix)
    except PayloadError as exc:
        return _error(422, exc.problem, exc.fix)
    except LeadscoreError as exc:  # the source or the setup, not the request
        return _error(503 if exc.transient else 500, exc.problem, exc.fix)
    except Exception as exc:
        # The message may quote data (e.g. a schema check's input); the traceback is enough.
        log.error(
            "unexpected %s while scoring:\n%s",
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return _error(500, f"unexpected {type(exc).__name__} while scoring; see the service log")
    identity = state.identity()
    return {
        **scores,
        "model_name": identity["model_name"],
        "model_version": identity["model_version"],
        "reference": population.describe() if population is not None else None,
    }


def _published_row(row: dict[str, Any]) -> dict[str, Any]:
    """A history row as the API shows scores (lists of reasons, numbers, ISO dates)."""
    p = row.get("conversion_probability")
    return {
        "lead_id": row["lead_id"],
        "as_of": str(row["as_of_date"]),
        "conversion_probability": None if p is None or math.isnan(p) else float(p),
        "percentile": float(row["percentile"]),
        "tier": row["tier"],
        "rule_score": float(row["rule_score"]),
        "is_mql": bool(row["is_mql"]),
        "rules_fired": reasons(row.get("rules_fired"), ","),
        "reasons_up": reasons(row.get("reasons_up")),
        "reasons_down": reasons(row.get("reasons_down")),
        "model_version": row.get("model_version"),
    }


def _utc(moment: Any) -> pd.Timestamp:
    return pd.Timestamp(moment).tz_convert("UTC").tz_localize(None).as_unit("us")


def activities_frame(lead: LeadIn) -> pd.DataFrame:
    """The posted activities as the source gives them: naive UTC times, text columns."""
    acts = lead.activities
    return pd.DataFrame(
        {
            "occurred_at": pd.to_datetime([a.occurred_at for a in acts], utc=True)
            .tz_localize(None)
            .as_unit("us"),
            "activity_type": pd.array([a.activity_type for a in acts], dtype="str"),
            "detail": pd.array([a.detail for a in acts], dtype="str"),
        }
    )


_ALLOWED = {"activities": list(ActivityIn.model_fields), "": list(LeadIn.model_fields)}
_EVENTS_ALLOWED = {"events": list(EventIn.model_fields), "": list(EventsIn.model_fields)}


def _sentence(error: dict[str, Any], events: bool = False) -> str:
    """One validation error as a sentence naming the field; the submitted value is not shown."""
    where, *path = [str(p) for p in error["loc"]] or ["body"]
    field = ".".join(path) or where
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "missing" and not path and where == "body":
        return "the request body is missing: send a JSON object (Content-Type: application/json)"
    if kind == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', message)})"
    if kind in ("model_attributes_type", "dict_type") and not path:
        if events:
            return 'the body must be a JSON object: {"events": [{"lead_id": ..., ...}]}'
        return "the body must be a JSON object with created_at, attributes and activities"
    if kind == "extra_forbidden":
        known = _EVENTS_ALLOWED if events else _ALLOWED
        allowed = known.get(path[0] if len(path) > 1 else "", known[""])
        return f"unknown field '{field}'; allowed here: {', '.join(allowed)}"
    if kind == "too_long" and path in (["activities"], ["events"]):
        return f"{path[0]}: at most {MAX_ACTIVITIES:,} per request; send the most recent ones"
    if where in ("query", "path"):
        field = f"{field} ({where})"
    return f"{field}: {message}"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    events = request.url.path.startswith("/events")
    problems = list(dict.fromkeys(_sentence(e, events) for e in exc.errors()))
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return _error(
        422,
        "invalid request: " + "; ".join(problems[:5]) + more,
        "fix the fields named; the schema is at /docs and /openapi.json",
        problems=problems,
    )


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before anything parses them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:  # chunked bodies declare no length: count what arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            response = _error(
                422,
                f"invalid request: the body is not UTF-8 text (byte {exc.start:,})",
                "send JSON encoded as UTF-8 (Content-Type: application/json; charset=utf-8)",
            )
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = _error(
            413,
            f"the request body is larger than {self.max_bytes:,} bytes",
            f"send at most {MAX_ACTIVITIES:,} activities and texts of at most {MAX_TEXT} "
            "characters",
        )
        await response(scope, receive, send)


#: Paths anyone may call: the health probe and the API's own description.
OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/redoc")


def scope_of(path: str) -> str | None:
    """The key scope a path needs (None: open)."""
    if path in OPEN_PATHS or path.startswith("/docs/"):
        return None
    return "events" if path.startswith("/events") else "score"


def _presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


class Gate:
    """Only the right callers: the API key and its scope, a rate limit per key, and one
    audit line per call (who, what route, the status; never a payload or a lead id)."""

    def __init__(self, app: Any, audit: logging.Logger | None) -> None:
        self.app, self.audit = app, audit
        self.calls: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.touched: dict[str, float] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        outcome = {"status": 500}
        key = None

        async def tell(message: dict) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            await send(message)

        try:
            state: ServiceState = scope["app"].state.scoring
            needed = scope_of(scope["path"])
            if state.keys is not None:
                refusal, key = await self._check(state.keys, scope, needed)
                if refusal is not None:
                    return await refusal(scope, receive, tell)
            scope.setdefault("state", {})["key"] = key
            await self.app(scope, receive, tell)
        finally:
            if self.audit is not None:
                self.audit.info(json.dumps({
                    "at": pd.Timestamp.now(tz="UTC").isoformat(),
                    "key_id": key.key_id if key else None,
                    "key_name": key.name if key else None,
                    "method": scope.get("method"),
                    "route": _route_of(scope),
                    "status": outcome["status"],
                    "ms": round(1000 * (time.perf_counter() - started), 1),
                }))  # fmt: skip

    async def _check(self, keys: KeyStore, scope: dict, needed: str | None):
        presented = _presented_key(dict(scope["headers"]))
        if presented is None:
            if needed is None:
                return None, None
            return _refuse(401, "no API key",
                           "send `Authorization: Bearer <key>`; create a key with `leadscore "
                           f"keys create --name NAME --scope {needed}`"), None  # fmt: skip
        key = await run_in_threadpool(keys.check, presented)
        if key is None:
            return _refuse(401, "unknown API key", "check the key; `leadscore keys list` "
                           "shows the keys there are"), None  # fmt: skip
        if key.revoked:
            return _refuse(401, f"API key lsk_{key.key_id} was revoked",
                           "create a new one with `leadscore keys create`"), None  # fmt: skip
        if needed is not None and not key.allows(needed):
            return _refuse(
                403,
                f"API key '{key.name}' (lsk_{key.key_id}) lacks the scope '{needed}' "
                f"(it has: {', '.join(sorted(key.scopes))})",
                f"use a key created with --scope {needed}",
            ), key
        calls, moment = self.calls[key.key_id], time.monotonic()
        while calls and calls[0] <= moment - 60:
            calls.popleft()
        if len(calls) >= key.rate_per_minute:
            wait = max(1, math.ceil(60 - (moment - calls[0])))
            return _refuse(429, f"API key '{key.name}' made {key.rate_per_minute} calls in the "
                           "last minute, its limit", f"retry after {wait} s",
                           headers={"Retry-After": str(wait)}), key  # fmt: skip
        calls.append(moment)
        if moment - self.touched.get(key.key_id, -1e9) > 60:
            self.touched[key.key_id] = moment
            try:
                await run_in_threadpool(keys.touch, key.key_id)
            except LeadscoreError as exc:  # the call goes on; only last_used_at is late
                log.warning("could not record the use of a key: %s", exc.problem)
        return None, key


def _refuse(status: int, problem: str, fix: str, headers: dict[str, str] | None = None):
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(
        status_code=status, content={"error": problem, "fix": fix},
        headers={**extra, **(headers or {})},
    )  # fmt: skip


def _route_of(scope: dict) -> str:
    """The route's template (`/leads/{lead_id}/score`), never the lead id itself."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    for candidate in getattr(scope.get("app"), "routes", []):  # refused before routing
        if candidate.matches(scope)[0] == Match.FULL:
            return candidate.path
    return "(no route)"


def _audit_logger(config: ProjectConfig) -> logging.Logger | None:
    if config.service.audit_log is None:
        return None
    path = config.resolve_path(config.service.audit_log)
    audit = logging.getLogger(f"leadscore.audit.{path}")
    if not audit.handlers:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.propagate = False
    return audit


def create_app(
    config: ProjectConfig,
    reference_refresh_seconds: float = REFERENCE_REFRESH_SECONDS,
    rules_only: bool = False,
    champion_poll_seconds: float | None = None,
) -> FastAPI:
    """The service for one project; the champion is loaded when the app starts (lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = load_state(config, rules_only)
        app.state.scoring = state
        app.state.retired = []  # scorers of champions replaced while serving
        reference = state.population.describe() if state.population else "none"
        identity = state.identity()
        log.info(
            "serving %s version %s; percentiles relative to %s",
            identity["model_name"],
            identity["model_version"] or "(rules only)",
            reference,
        )
        tasks = []
        if reference_refresh_seconds > 0:
            tasks.append(asyncio.create_task(_refresh_reference(app, reference_refresh_seconds)))
        poll = config.service.champion_poll_seconds if champion_poll_seconds is None else (
            champion_poll_seconds
        )  # fmt: skip
        if poll > 0 and state.champion is not None:
            tasks.append(asyncio.create_task(_follow_champion(app, poll)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            state = app.state.scoring
            for one in [*app.state.retired, state.one]:
                if one is not None:
                    one.close()
            if state.published is not None:
                state.published.close()
            if state.keys is not None:
                state.keys.close()

    app = FastAPI(
        title="leadscore",
        summary="On-demand lead scores from the champion model, as the nightly batch scores.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(Gate, audit=_audit_logger(config))
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        """The model in service and when it was loaded (open to all, for probes); with a
        valid key also the reference and the fields it reads."""
        state: ServiceState = request.app.state.scoring
        answer = {
            "status": "ok",
            "mode": "rules-only" if state.champion is None else "model",
            **state.identity(),
            "loaded_at": state.loaded_at.isoformat() + "Z",
        }
        if state.keys is not None and getattr(request.state, "key", None) is None:
            return answer
        return {
            **answer,
            "reference": state.population.describe() if state.population else None,
            "fields": ondemand.payload_fields(state.scorer),
            "single_lead": state.one.mode if state.one is not None else "batch",
        }

    @app.get("/leads/{lead_id}/score", response_model=ScoreOut)
    def score_lead(
        request: Request,
        lead_id: Annotated[str, Path(min_length=1, max_length=ondemand.MAX_LEAD_ID_LENGTH)],
        as_of: Annotated[
            Timestamp | None, Query(description="Score as of this moment (default: now).")
        ] = None,
    ) -> Any:
        """Score one lead of the source database as of now (or `as_of`); nothing is published."""
        state: ServiceState = request.app.state.scoring
        moment = now() if as_of is None else _utc(as_of)

        def work(population: Population | None) -> dict[str, Any]:
            return state.one.by_id(lead_id, moment, population)

        answer = _scored(state, work)
        if isinstance(answer, dict) and state.published is not None:
            try:
                newest = state.published.last(lead_id, 1)
            except LeadscoreError as exc:  # the score stands; only the comparison is missing
                log.warning("no comparison with the published score: %s", exc.problem)
                newest = []
            if newest:
                answer["since_published"] = {
                    "as_of": str(newest[0]["as_of_date"]),
                    "changes": score_change(
                        _published_row(newest[0]), answer, Words(state.config.report.language)
                    ),
                }
        return answer

    @app.get("/leads/{lead_id}/changes", response_model=ChangesOut)
    def lead_changes(
        request: Request,
        lead_id: Annotated[str, Path(min_length=1, max_length=ondemand.MAX_LEAD_ID_LENGTH)],
    ) -> Any:
        """Why the lead's score changed: its two newest published scores, compared."""
        state: ServiceState = request.app.state.scoring
        table = state.config.publish.history_table
        try:
            rows = state.published.last(lead_id, 2) if state.published else []
        except LeadscoreError as exc:
            return _error(503 if exc.transient else 500, exc.problem, exc.fix)
        if not rows:
            return _error(
                404,
                f"lead {lead_id} has no published score in {table}",
                "check the lead id; leads are published by `leadscore score` while open",
            )
        latest = _published_row(rows[0])
        previous = _published_row(rows[1]) if len(rows) > 1 else None
        return {
            "lead_id": latest["lead_id"],
            "latest": latest,
            "previous": previous,
            "changes": score_change(previous, latest, Words(state.config.report.language)),
        }

    @app.post("/score", response_model=ScoreOut)
    def score_posted(request: Request, lead: LeadIn) -> Any:
        """Score a lead posted as JSON (fields and recent activities); nothing is stored."""
        state: ServiceState = request.app.state.scoring
        moment = now() if lead.as_of is None else _utc(lead.as_of)
        activities = [(_utc(a.occurred_at), a.activity_type, a.detail) for a in lead.activities]
        created = None if lead.created_at is None else _utc(lead.created_at)

        def work(population: Population | None) -> dict[str, Any]:
            return state.one.posted(lead.attributes, activities, created, moment, population)

        return _scored(state, work)

    @app.post("/events", response_model=EventsOut)
    def post_events(request: Request, body: EventsIn, background: BackgroundTasks) -> Any:
        """Store activities of known leads as they happen and rescore those leads at once
        (a retried post stores nothing twice: see `event_id`)."""
        state: ServiceState = request.app.state.scoring
        one = state.one
        config = state.config
        if one is not None and one.events_problem is not None:
            return _error(503, one.events_problem, "check publish.uri; restart the service")
        if one is None or one.events is None:
            return _error(409, *_no_events(config))
        latest = now() + pd.Timedelta(days=1)
        late = [f"events.{i}.occurred_at" for i, e in enumerate(body.events)
                if _utc(e.occurred_at) > latest]  # fmt: skip
        if late:
            return _error(
                422,
                f"{', '.join(late[:5])}: timestamps in the future",
                "send UTC times or times with their offset; check the sender's clock",
            )
        asked = list(dict.fromkeys(e.lead_id for e in body.events))
        if len(asked) > ondemand.MAX_LEADS:
            return _error(
                422,
                f"events of {len(asked):,} leads in one call; at most {ondemand.MAX_LEADS}",
                "split the events into calls of fewer leads (each lead is rescored at once)",
            )
        try:
            known = one.known_leads(asked)
            unknown = [k for k in asked if k not in known]
            if unknown:
                return _error(
                    422,
                    f"lead(s) {', '.join(repr(k) for k in unknown[:10])} not found in table "
                    f"'{config.source.tables.leads}'; nothing was stored",
                    f"post events of leads the source holds, by column "
                    f"'{config.source.columns.lead_id}'",
                )
            events = [
                Event(known[e.lead_id], _utc(e.occurred_at), e.activity_type, e.detail, e.event_id)
                for e in body.events
            ]
            key = getattr(request.state, "key", None)
            stored = one.events.store(events, key.key_id if key is not None else None)
        except LeadscoreError as exc:
            return _error(503 if exc.transient else 500, exc.problem, exc.fix)
        moment = now()  # after storing: the new events are before it
        rescored, not_scored, queued = [], [], 0
        first: dict[str, str] = {}
        for event in stored:
            first.setdefault(event.lead_id, event.key)
        for lead, event_key in first.items():
            answer = _scored(
                state, lambda population, lead=lead: one.by_id(lead, moment, population)
            )
            if isinstance(answer, JSONResponse):
                not_scored.append({"lead_id": lead, **json.loads(answer.body)})
                continue
            rescored.append(answer)
            queued += _event_alerts(state, answer, event_key, moment)
        if queued:
            background.add_task(_deliver_alerts, config)
        return {
            "received": len(body.events),
            "stored": len(stored),
            "duplicates": len(body.events) - len(stored),
            "rescored": rescored,
            "alerts_queued": queued,
            "not_scored": not_scored,
        }

    return app


def _event_alerts(
    state: ServiceState, answer: dict[str, Any], event_key: str, moment: pd.Timestamp
) -> int:
    """Stage the alerts of a lead turned hot by posted events since its newest published
    score; a failure is logged, never lost: the nightly run alerts it then."""
    config = state.config
    if not config.alerts.sinks or state.published is None:
        return 0
    current = {
        **answer,
        "rules_fired": ",".join(answer["rules_fired"]),
        "reasons_up": "; ".join(answer["reasons_up"]),
        "reasons_down": "; ".join(answer["reasons_down"]),
        "as_of_date": moment.date(),
        "scored_at": moment,
    }
    try:
        newest = state.published.last(str(answer["lead_id"]), 1)
        return alerts.stage_event_alerts(
            config.publish_uri, config.alerts, current, newest[0] if newest else None,
            event_key, moment,
        )  # fmt: skip
    except LeadscoreError as exc:
        log.warning("could not queue the alert of a rescored lead: %s", exc.problem)
        return 0


def _deliver_alerts(config: ProjectConfig) -> None:
    """Send what is due now (after the answer went out); what fails stays queued."""
    try:
        report = alerts.deliver(config.publish_uri, config.alerts)
        log.info("alerts after posted events: %s", report.as_dict())
    except Exception as exc:  # the outbox keeps them for `leadscore alerts --deliver`
        log.warning("could not deliver alerts: %s", type(exc).__name__)


def _no_events(config: ProjectConfig) -> tuple[str, str]:
    """Why this project takes no events, and the fix."""
    if config.flat:
        return ("a flat export has no activities to add events to",
                "post events to a project whose source has an activities table")  # fmt: skip
    if config.source.tables.activities is None:
        return ("the source has no activities table (source.tables.activities is null)",
                "map the activities table, retrain, then post events")  # fmt: skip
    if config.service.events_table is None:
        return ("events are off (service.events_table is null)",
                "set service.events_table (e.g. lead_events) and restart the service")  # fmt: skip
    return ("the publish database is not a database URL, where events are kept",
            "set publish.uri to a database (sqlite:///... or postgresql://...)")  # fmt: skip


def serve(
    config: ProjectConfig, host: str, port: int, log_level: str = "info", rules_only: bool = False
) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    package = logging.getLogger("leadscore")
    package.addHandler(handler)
    package.setLevel(log_level.upper())
    app = create_app(config, rules_only=rules_only)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
