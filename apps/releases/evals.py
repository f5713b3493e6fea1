"""Evaluation suites: writing them (owner or admin, audited) and running them on a version.

A suite is run in one of two ways (apps/releases/models.py ``EvalMode``):

- **recorded**: each case is judged on the latest *ended* run of the agent's version whose task
  is exactly the case's task, in any environment, and the tool calls Tether decided in it. A
  tool counts as called when a ``tool.invoke`` decision for it answered allow or modify (a
  denied or unanswered ask never reached the tool).
- **hook**: each case is POSTed, signed like the approvals webhooks (``X-Tether-Signature``:
  HMAC-SHA256 of ``<timestamp>.<body>`` keyed by the suite's secret), to the agent owner's eval
  hook with the version's behaviour; the hook replays it and answers
  ``{"outcome": str, "tools": [str], "finished": bool}``. Whatever the hook does (times out,
  refuses, answers garbage or far too much), the case fails with a sentence saying so.

:func:`suite_assess` runs a suite and writes nothing (promotion_gate saves what it returns in
one transaction with its audit event); :func:`suite_evaluate` runs and saves one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import User
from apps.approvals.notify import bounded, json_bytes, signed_headers
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted
from apps.common.tokens import token_digest
from apps.registry.constants import JSON_FIELD_MAX_BYTES
from apps.registry.models import Agent, AgentVersion
from apps.registry.selectors import can_change_agent, deployed_version
from apps.registry.snapshots import version_behaviour
from apps.registry.validators import (
    validate_json_object,
    validate_slug_list,
    validate_webhook_secret,
    validate_webhook_url,
)
from apps.runtime.constants import TASK_MAX, Action, Disposition, RunState
from apps.runtime.models import Decision, Run

from .models import SUITE_SLUG_MAX, EvalCase, EvalMode, EvalRun, EvalSuite, EvalVerdict

logger = logging.getLogger(__name__)

CASES_PER_SUITE_MAX = 500
HOOK_TIMEOUT_SECONDS = 10.0  # per case, the whole exchange
HOOK_REPLY_MAX_BYTES = 64 * 1024
# Cases replayed at once, and how long a whole hook suite may take: a promotion waits for it.
HOOK_CONCURRENCY = 4
HOOK_SUITE_DEADLINE_SECONDS = 120.0
HOOK_EVENT = "eval.case"
USER_AGENT = "Tether-Evals/1"
WHY_MAX = 300
SHOWN_MAX = 60  # characters of a hook's outcome quoted back in a case's "why"
CALLED = (Disposition.ALLOW, Disposition.MODIFY)

SUITE_FIELDS = (
    "name", "slug", "mode", "hook_url", "hook_secret", "min_pass_rate",
    "max_regression_points", "enabled",
)  # fmt: skip
CASE_FIELDS = (
    "name", "task", "input", "expected_outcome", "required_tools", "forbidden_tools",
    "must_finish",
)  # fmt: skip


# --- writing suites ----------------------------------------------------------------------------


def _check_can_change(actor: User, agent: Agent) -> None:
    if not can_change_agent(actor, agent):
        raise NotPermitted("Only the agent's owner or an admin can change its evaluation suites.")


def _refuse(errors: dict[str, list[str]]) -> None:
    if errors:
        field, messages = next(iter(errors.items()))
        raise ApplicationError(f"{field}: {messages[0]}", details=errors)


def _unknown_fields(data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApplicationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            details={key: ["Unknown field."] for key in unknown},
        )


def _field_errors(instance: EvalSuite | EvalCase, exclude: list[str]) -> dict[str, list[str]]:
    """The model's own field checks (lengths, choices, numbers in range), as details."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        return {key: list(messages) for key, messages in exc.message_dict.items()}
    except RecursionError:
        return {"input": ["Nested too deeply to store."]}
    return {}


def _add(errors: dict[str, list[str]], field: str, check: Any, value: Any) -> None:
    try:
        check(value)
    except ValidationError as exc:
        errors.setdefault(field, []).extend(exc.messages)


def _json_size(value: Any) -> int:
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        return JSON_FIELD_MAX_BYTES + 1


def suite_state(suite: EvalSuite) -> dict[str, Any]:
    """What the audit trail records of a suite; of its secret, a keyed fingerprint only."""
    return {
        "name": suite.name,
        "slug": suite.slug,
        "mode": suite.mode,
        "hook_url": suite.hook_url,
        "hook_secret": token_digest(suite.hook_secret)[:12] if suite.hook_secret else "",
        "min_pass_rate": suite.min_pass_rate,
        "max_regression_points": suite.max_regression_points,
        "enabled": suite.enabled,
    }


def case_state(case: EvalCase) -> dict[str, Any]:
    return {
        "suite": case.suite.slug,
        "name": case.name,
        "task": case.task,
        "input": case.input,
        "expected_outcome": case.expected_outcome,
        "required_tools": case.required_tools,
        "forbidden_tools": case.forbidden_tools,
        "must_finish": case.must_finish,
    }


@transaction.atomic
def suite_create(*, actor: User, agent: Agent, data: Mapping[str, Any]) -> EvalSuite:
    """Add an evaluation suite to ``agent``; every promotion of it is then held to the suite.

    ``data``: name (1-100 characters), slug (made from the name when left out; unique for the
    agent), mode (recorded or hook), hook_url and hook_secret (hook mode only, both needed:
    an http(s) URL and a 16-200 character secret), min_pass_rate (0-100, default 90),
    max_regression_points (0-100, default 5), enabled (default true)."""
    _check_can_change(actor, agent)
    _unknown_fields(data, SUITE_FIELDS)
    suite = EvalSuite(agent=agent)
    for key, value in data.items():
        # A secret is kept as given; other text loses stray spaces (a pasted URL, a name).
        strip = isinstance(value, str) and key != "hook_secret"
        setattr(suite, key, value.strip() if strip else value)
    if not data.get("slug") and isinstance(suite.name, str):
        suite.slug = slugify(suite.name)[:SUITE_SLUG_MAX].strip("-")
    errors = _field_errors(suite, exclude=["agent"])
    if suite.mode == EvalMode.HOOK:
        if not suite.hook_url:
            errors.setdefault("hook_url", []).append(
                "A hook suite needs the URL of the agent's eval hook, e.g. "
                "https://agents.example.com/eval."
            )
        elif "hook_url" not in errors:
            _add(errors, "hook_url", validate_webhook_url, suite.hook_url)
        if not suite.hook_secret:
            errors.setdefault("hook_secret", []).append(
                "Set a signing secret: the hook checks every call with it."
            )
        elif "hook_secret" not in errors:
            _add(errors, "hook_secret", validate_webhook_secret, suite.hook_secret)
    elif suite.mode == EvalMode.RECORDED:
        for field in ("hook_url", "hook_secret"):
            if getattr(suite, field):
                errors.setdefault(field, []).append(
                    "A recorded suite judges the version's own runs: leave this empty, or "
                    "choose the hook mode."
                )
    if "slug" not in errors and EvalSuite.objects.filter(agent=agent, slug=suite.slug).exists():
        errors["slug"] = [f"{agent.slug} already has a suite {suite.slug!r}: choose another."]
    _refuse(errors)
    try:
        with transaction.atomic():
            suite.save()
    except IntegrityError as exc:  # a concurrent create took the slug
        raise ApplicationError(
            "That suite slug was just taken.", details={"slug": ["Choose another slug."]}
        ) from exc
    audit_record(
        actor=Actor.user(actor), action="releases.suite.created", target_type="agent",
        target_id=agent.pk, target_repr=agent.slug, after=suite_state(suite),
        message=f"Evaluation suite {suite.name} added ({suite.mode})",
    )  # fmt: skip
    return suite


@transaction.atomic
def case_add(*, actor: User, suite: EvalSuite, data: Mapping[str, Any]) -> EvalCase:
    """Add a case to ``suite`` (at most 500 a suite).

    ``data``: name (1-100 characters, unique in the suite), task (the input, 1-2000
    characters; a recorded suite matches it exactly to the runs' task), input (a JSON object
    of at most 16 KiB, sent to a hook), expected_outcome (empty: any), required_tools and
    forbidden_tools (tool slugs, at most 50 each, none in both), must_finish (default true)."""
    agent = suite.agent
    _check_can_change(actor, agent)
    _unknown_fields(data, CASE_FIELDS)
    locked = EvalSuite.objects.select_for_update().get(pk=suite.pk)  # counts cases one at a time
    if locked.cases.count() >= CASES_PER_SUITE_MAX:
        raise ApplicationError(
            f"{locked.name} holds {CASES_PER_SUITE_MAX} cases, as many as a suite may: start "
            "another suite.",
            details={"suite": [f"At most {CASES_PER_SUITE_MAX} cases."]},
        )
    case = EvalCase(suite=locked)
    for key, value in data.items():
        # The task is kept exactly: a recorded suite matches it to the runs' task.
        strip = isinstance(value, str) and key in ("name", "expected_outcome")
        setattr(case, key, value.strip() if strip else value)
    errors = _field_errors(case, exclude=["suite", "required_tools", "forbidden_tools", "input"])
    if isinstance(case.task, str):
        if not case.task.strip():
            errors["task"] = ["Say what the agent is asked to do."]
        elif len(case.task) > TASK_MAX:
            errors["task"] = [f"At most {TASK_MAX} characters (a run's task is no longer)."]
    _add(errors, "input", validate_json_object, case.input)
    for field in ("required_tools", "forbidden_tools"):  # slugs, at most 50, each once
        _add(errors, field, validate_slug_list, getattr(case, field))
    if not {"required_tools", "forbidden_tools"} & set(errors):
        both = sorted(set(case.required_tools) & set(case.forbidden_tools))
        if both:
            errors["forbidden_tools"] = [f"Both required and forbidden: {', '.join(both)}."]
    if not errors and _json_size(case_state(case)) > JSON_FIELD_MAX_BYTES:
        errors["input"] = [f"The case is larger than {JSON_FIELD_MAX_BYTES // 1024} KiB."]
    if "name" not in errors and locked.cases.filter(name=case.name).exists():
        errors["name"] = [f"The suite already has a case named {case.name!r}."]
    _refuse(errors)
    case.save()
    audit_record(
        actor=Actor.user(actor), action="releases.case.added", target_type="agent",
        target_id=agent.pk, target_repr=agent.slug, after=case_state(case),
        message=f"Case {case.name} added to evaluation suite {locked.name}",
    )  # fmt: skip
    return case


@transaction.atomic
def suite_delete(*, actor: User, suite: EvalSuite) -> None:
    """Remove a suite, its cases and its evaluation runs; promotions are no longer held to it.
    The audit event keeps what it was and how many cases and runs went with it."""
    agent = suite.agent
    _check_can_change(actor, agent)
    before = {**suite_state(suite), "cases": suite.cases.count(), "runs": suite.runs.count()}
    name = suite.name
    suite.delete()
    audit_record(
        actor=Actor.user(actor), action="releases.suite.deleted", target_type="agent",
        target_id=agent.pk, target_repr=agent.slug, before=before,
        message=f"Evaluation suite {name} removed",
    )  # fmt: skip


# --- running suites ----------------------------------------------------------------------------


def _number(value: float) -> str:
    """A rate or a difference of rates as people write it: 75, 66.7."""
    return f"{value:.1f}".removesuffix(".0")


def _percent(value: float) -> str:
    return f"{_number(value)}%"


def _result(case: EvalCase, problems: list[str]) -> dict[str, Any]:
    why = "; ".join(problems) if problems else "all checks passed"
    return {"case": case.name, "passed": not problems, "why": bounded(why, WHY_MAX)}


def _judge(
    case: EvalCase, *, finished: bool, ended_as: str, outcome: str, called: set[str]
) -> list[str]:
    """What is wrong with how a case went (nothing: it passed)."""
    problems = []
    if case.must_finish and not finished:
        problems.append(f"did not finish ({ended_as})")
    if case.expected_outcome and outcome != case.expected_outcome:
        shown = bounded(outcome, SHOWN_MAX) if outcome else ""
        problems.append(
            f"outcome {shown!r}, expected {case.expected_outcome!r}"
            if shown
            else f"no outcome, expected {case.expected_outcome!r}"
        )
    missing = [tool for tool in case.required_tools if tool not in called]
    if missing:
        problems.append(f"required tool(s) not called: {', '.join(missing)}")
    forbidden = [tool for tool in case.forbidden_tools if tool in called]
    if forbidden:
        problems.append(f"forbidden tool(s) called: {', '.join(forbidden)}")
    return problems


def _recorded_results(
    agent: Agent, version: AgentVersion, cases: list[EvalCase]
) -> list[dict[str, Any]]:
    latest: dict[str, Run | None] = {}
    for task in dict.fromkeys(case.task for case in cases):
        latest[task] = (
            Run.objects.filter(agent=agent, version=version, task=task, ended_at__isnull=False)
            .order_by("-ended_at", "-started_at")
            .only("id", "state", "outcome")
            .first()
        )
    run_ids = [run.pk for run in latest.values() if run is not None]
    called: dict[Any, set[str]] = {pk: set() for pk in run_ids}
    decisions = Decision.objects.filter(
        run_id__in=run_ids, action=Action.TOOL_INVOKE, disposition__in=CALLED
    ).values_list("run_id", "target")
    for run_id, target in decisions:
        called[run_id].add(target)
    results = []
    for case in cases:
        run = latest[case.task]
        if run is None:
            results.append(_result(case, [f"no recorded run of v{version.number} for this task"]))
            continue
        problems = _judge(
            case,
            finished=run.state == RunState.FINISHED,
            ended_as=f"run {str(run.pk)[:8]} {run.state}",
            outcome=run.outcome,
            called=called[run.pk],
        )
        results.append(_result(case, problems))
    return results


class HookError(Exception):
    """The eval hook did not answer usefully; ``message`` says how, for the case's ``why``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _hook_post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POST one case; the answer's body (at most HOOK_REPLY_MAX_BYTES). Redirects are not
    followed, nor compressed answers unpacked (a small gzip can unpack to gigabytes): the
    request asks for ``identity`` and the body is read raw. httpx bounds each read; the
    exchange as a whole is bounded too, so a hook dripping a byte at a time is cut off at its
    first chunk after HOOK_TIMEOUT_SECONDS."""
    parts = urlsplit(url)
    host = parts.hostname or url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookError("the suite's hook URL is not an http(s) URL")
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        **headers,
    }
    started = time.monotonic()
    too_slow = f"the hook at {host} did not answer within {HOOK_TIMEOUT_SECONDS:g} s"
    try:
        with httpx.stream(
            "POST", url, content=body, headers=headers, timeout=HOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as response:  # fmt: skip
            status = response.status_code
            if not 200 <= status < 300:
                hint = (
                    " (redirects are not followed: use the final URL)"
                    if 300 <= status < 400
                    else ""
                )
                raise HookError(f"the hook at {host} answered HTTP {status}{hint}")
            read = bytearray()
            for chunk in response.iter_raw():
                read += chunk
                if len(read) > HOOK_REPLY_MAX_BYTES:
                    raise HookError(
                        f"the hook's reply is larger than {HOOK_REPLY_MAX_BYTES // 1024} KiB"
                    )
                if time.monotonic() - started > HOOK_TIMEOUT_SECONDS:
                    raise HookError(too_slow)
    except httpx.TimeoutException as exc:
        raise HookError(too_slow) from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise HookError(
            f"could not reach the hook at {host}: {str(exc) or type(exc).__name__}"
        ) from exc
    return bytes(read)


def _hook_reply(raw: bytes) -> tuple[str, list[str], bool]:
    """The hook's answer as (outcome, tools, finished), or HookError saying what is wrong."""
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, absurdly nested
        raise HookError("the hook's reply is not JSON") from exc
    expected = '{"outcome": str, "tools": [str], "finished": bool}'
    if not isinstance(reply, dict):
        raise HookError(f"the hook's reply is not a JSON object like {expected}")
    outcome, tools, finished = reply.get("outcome"), reply.get("tools"), reply.get("finished")
    if not isinstance(outcome, str):
        raise HookError(f'the hook\'s reply has no "outcome" string (expected {expected})')
    if not isinstance(tools, list) or not all(isinstance(tool, str) for tool in tools):
        raise HookError(f'the hook\'s reply has no "tools" list of names (expected {expected})')
    if not isinstance(finished, bool):
        raise HookError(f'the hook\'s reply has no "finished" true/false (expected {expected})')
    return outcome, tools, finished


def _hook_case(
    suite: EvalSuite,
    version: AgentVersion,
    behaviour: dict[str, Any],
    case: EvalCase,
    deadline: float,
) -> dict[str, Any]:
    """Replay one case through the hook (in a worker thread: no database here)."""
    if time.monotonic() >= deadline:
        return _result(
            case,
            [f"not replayed: the suite ran out of its {HOOK_SUITE_DEADLINE_SECONDS:g} s"],
        )
    payload = {
        "suite": suite.slug,
        "case": case.name,
        "task": case.task,
        "input": case.input,
        "version": version.number,
        "behaviour": behaviour,
    }
    body = json_bytes(payload)
    headers = signed_headers(suite.hook_secret, body, event=HOOK_EVENT, delivery=str(uuid.uuid4()))
    try:
        outcome, tools, finished = _hook_reply(_hook_post(suite.hook_url, body, headers))
    except HookError as exc:
        return _result(case, [exc.message])
    return _result(
        case,
        _judge(
            case,
            finished=finished,
            ended_as="the hook says it did not",
            outcome=outcome,
            called=set(tools),
        ),
    )


def _hook_results(
    suite: EvalSuite, version: AgentVersion, cases: list[EvalCase]
) -> list[dict[str, Any]]:
    if not cases:
        return []
    behaviour = version_behaviour(version)
    deadline = time.monotonic() + HOOK_SUITE_DEADLINE_SECONDS
    with ThreadPoolExecutor(max_workers=min(HOOK_CONCURRENCY, len(cases))) as pool:
        return list(
            pool.map(lambda case: _hook_case(suite, version, behaviour, case, deadline), cases)
        )


def reference_run(*, suite: EvalSuite, version: AgentVersion, environment: str) -> EvalRun | None:
    """The bar for a regression: the suite's latest run (with cases) for the version serving
    in ``environment``, when that is another version than the one being assessed."""
    if not environment:
        return None
    serving = deployed_version(suite.agent, environment)
    if serving is None or serving.pk == version.pk:
        return None
    return (
        EvalRun.objects.filter(suite=suite, version=serving, total__gt=0)
        .select_related("version")
        .order_by("-finished_at", "-id")
        .first()
    )


def blocking_reasons(run: EvalRun) -> list[str]:
    """Why ``run`` holds its version back (nothing: it passed), against its suite's bars."""
    suite = run.suite
    if run.total == 0:
        return ["has no cases: add cases, or disable the suite"]
    reasons = []
    if run.passed * 100 < suite.min_pass_rate * run.total:
        reasons.append(
            f"passed {run.passed} of {run.total} cases ({_percent(run.pass_rate)}); "
            f"at least {suite.min_pass_rate}% must pass"
        )
    if run.reference_rate is not None and run.reference_version is not None:
        drop = run.reference_rate - run.pass_rate
        if drop > suite.max_regression_points:
            reasons.append(
                f"passed {_percent(run.pass_rate)}, {_number(drop)} points "
                f"below v{run.reference_version.number}'s {_percent(run.reference_rate)} "
                f"(at most {suite.max_regression_points} allowed)"
            )
    return reasons


def suite_assess(
    *, suite: EvalSuite, version: AgentVersion, actor_name: str, environment: str = ""
) -> EvalRun:
    """Run ``suite`` on ``version`` and judge it; the EvalRun comes back unsaved.

    ``environment``: where the version is to be promoted; the version serving there sets the
    regression bar (:func:`reference_run`). The hook calls are made here, so call this outside
    any transaction: they take up to seconds each."""
    if version.agent_id != suite.agent_id:
        raise ApplicationError("That version belongs to another agent than the suite.")
    started = timezone.now()
    cases = list(suite.cases.order_by("id"))
    if suite.mode == EvalMode.HOOK:
        results = _hook_results(suite, version, cases)
    else:
        results = _recorded_results(suite.agent, version, cases)
    passed = sum(1 for result in results if result["passed"])
    reference = reference_run(suite=suite, version=version, environment=environment)
    run = EvalRun(
        suite=suite,
        version=version,
        environment=environment,
        started_at=started,
        finished_at=timezone.now(),
        passed=passed,
        total=len(results),
        pass_rate=100.0 * passed / len(results) if results else 0.0,
        reference_version=reference.version if reference is not None else None,
        reference_rate=reference.pass_rate if reference is not None else None,
        results=results,
        actor_name=actor_name[:200],
    )
    run.verdict = EvalVerdict.BLOCKED if blocking_reasons(run) else EvalVerdict.PASSED
    logger.info(
        "releases: suite %s on %s v%s: %s/%s passed (%s)",
        suite.slug, suite.agent.slug, version.number, passed, len(results), run.verdict,
    )  # fmt: skip
    return run


def suite_evaluate(
    *, suite: EvalSuite, version: AgentVersion, actor_name: str, environment: str = ""
) -> EvalRun:
    """Run ``suite`` on ``version`` and keep the EvalRun (see :func:`suite_assess`)."""
    run = suite_assess(suite=suite, version=version, actor_name=actor_name, environment=environment)
    run.save()
    return run
