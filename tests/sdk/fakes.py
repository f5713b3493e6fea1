"""A scripted stand-in for Tether's runtime API, for the SDK's own unit tests (httpx's
MockTransport): it answers by path and records what it was sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

URL = "http://tether.test"
AGENT_KEY = "tth_agent_0123abcd_secret"
RUN_ID = "6f1c1f1e-5c1e-4a51-9a8e-1d2c3b4a5f60"
RUN_TOKEN = "tth_run_89abcdef_secret"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def decision(disposition: str = "allow", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": 7,
        "disposition": disposition,
        "reasons": ["allowed"] if disposition == "allow" else ["tool_not_granted"],
        "reasoning": "Granted." if disposition == "allow" else "Not granted.",
        "policies": ["grant-1"],
        "budgets": {"calls": {"kind": "tool_calls", "limit": 10, "used": 1, "remaining": 9}},
        "arguments": None,
        "model": None,
        "approval": None,
    }
    body.update(extra)
    return body


def started(posture: str = "fail_closed", ttl_seconds: int = 900) -> dict[str, Any]:
    return {
        "run": {
            "id": RUN_ID,
            "agent": "claims-triage",
            "version": 3,
            "environment": "prod",
            "state": "running",
            "task": "Triage claim 4711",
            "on_behalf_of": None,
            "parent_run": None,
            "started_at": "2025-01-01T12:00:00+00:00",
            "expires_at": f"2025-01-01T12:{ttl_seconds // 60:02d}:{ttl_seconds % 60:02d}+00:00",
            "url": f"{URL}/api/v1/runtime/runs/{RUN_ID}",
        },
        "token": RUN_TOKEN,
        "failure_posture": posture,
        "envelope": {"tools": {"crm-lookup": ["read"]}, "memory": {"notes": "read"}},
    }


def error(status: int, code: str, message: str = "No.", **details: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "details": details}}
    )


@dataclass
class FakeTether:
    """Queue answers per path (``runs/``, ``decisions/``, ``usage/``, ``heartbeat``,
    ``finish``); an empty queue answers a sensible default."""

    posture: str = "fail_closed"
    ttl_seconds: int = 900
    queues: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def queue(self, route: str, *answers: Answer) -> None:
        self.queues.setdefault(route, []).extend(answers)

    def sent(self, route: str) -> list[dict[str, Any]]:
        return [json.loads(r.content or b"{}") for r in self.requests if _route(r) == route]

    def headers(self, route: str) -> list[str]:
        return [r.headers["Authorization"] for r in self.requests if _route(r) == route]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = _route(request)
        queue = self.queues.get(route)
        if queue:
            answer = queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            if isinstance(answer, httpx.Response):
                return answer
            return answer(request)
        return self._default(route)

    def _default(self, route: str) -> httpx.Response:
        if route == "runs/":
            return httpx.Response(201, json=started(self.posture, self.ttl_seconds))
        if route == "decisions/":
            return httpx.Response(200, json=decision())
        if route == "usage/":
            return httpx.Response(200, json={"reconciled": True, "budgets": {}})
        if route == "heartbeat":
            return httpx.Response(200, json={"state": "running", "expires_at": "x"})
        if route == "finish":
            return httpx.Response(200, json={"id": RUN_ID, "state": "finished"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": route}})


def _route(request: httpx.Request) -> str:
    path = request.url.path.removeprefix("/api/v1/runtime/")
    return path.rsplit("/", 1)[-1] if path.startswith("runs/") and path != "runs/" else path
