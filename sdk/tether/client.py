"""The synchronous client: ``Client`` and the ``Run`` it starts."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from ._base import (
    CONTROL_CLOSE_SECONDS,
    MIN_CONTROL_BACKOFF,
    USER_AGENT,
    RunBase,
    approval_url,
    approval_wait,
    base_url,
    check_settings,
    control_headers,
    control_refused,
    control_url,
    control_wanted,
    current_run,
    default_headers,
    encode,
    is_retryable,
    logger,
    long_poll_timeout,
    new_idempotency_key,
    next_poll,
    past,
    poll_params,
    read_response,
    request_headers,
    resolve_config,
    retry_delay,
    unavailable,
    wait_deadline,
)
from .errors import (
    ApiError,
    ApprovalRequired,
    NoActiveRun,
    RunEnded,
    TetherError,
    TetherUnavailable,
    Unauthorized,
)
from .governed import governed_tool
from .models import Approval, Budget, Decision

P = ParamSpec("P")
R = TypeVar("R")


class Client:
    """Talks to Tether for one agent, identified by its agent key.

    ``url`` and ``agent_key`` default to ``TETHER_URL`` and ``TETHER_AGENT_KEY``. Requests
    that fail with a connection error or a 5xx are retried ``retries`` times, waiting about
    ``backoff * 2**attempt`` seconds; 4xx answers are not retried. A retried decision carries
    the same Idempotency-Key, so Tether answers it once and charges it once. A ``defer`` is
    waited out (Tether says how long) and asked again, for up to ``defer_timeout`` seconds.
    ``transport`` is handed to httpx (tests pass ``httpx.MockTransport``); with one, runs
    hold no control socket unless ``run(..., control=True)`` asks for it.
    """

    def __init__(
        self,
        url: str | None = None,
        agent_key: str | None = None,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        defer_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, self.agent_key = resolve_config(url, agent_key)
        check_settings(timeout, retries, backoff, defer_timeout)
        self.defer_timeout = defer_timeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=base_url(self.url),
            timeout=timeout,
            transport=transport,
            headers=default_headers(),
        )
        self._custom_transport = transport is not None
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"<tether.Client {self.url}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def run(
        self,
        task: str,
        *,
        intent: str | None = None,
        on_behalf_of: str | None = None,
        parent_run: str | None = None,
        control: bool | None = None,
    ) -> Iterator[Run]:
        """Start a run for the block, heartbeat while it lasts, finish it on the way out.

        The block's run becomes the one ``governed_tool`` functions ask. Leaving normally
        finishes the run (outcome ``run.outcome``); leaving by an exception marks it failed
        with the exception's class name, and the exception goes on. If Tether cannot be
        reached to start the run, ``TetherUnavailable`` is raised: there is no posture yet.

        With ``control`` (the default; ``TETHER_CONTROL=0`` turns it off) the run holds its
        control socket in a daemon thread: a kill switch pressed in Tether sets
        ``run.killed`` within moments, calls the ``run.on_kill`` callbacks, interrupts a
        ``wait_for_approval`` and makes every later check raise ``RunKilled`` at once.
        """
        body: dict[str, Any] = {"task": task}
        for key, value in (
            ("intent", intent),
            ("on_behalf_of", on_behalf_of),
            ("parent_run", parent_run),
        ):
            if value is not None:
                body[key] = value
        wanted = control_wanted(control, self._custom_transport)
        data = self._request("runs/", self.agent_key, body)
        run = Run(**Run.fields_from_start(data), client=self)
        listener = _Control(run) if wanted else None
        if listener is not None:
            listener.start()
        heartbeat = _Heartbeat(run)
        heartbeat.start()
        token = current_run.set(run)
        try:
            yield run
        except BaseException as exc:
            _stop(listener, heartbeat)
            run._finish("failed", type(exc).__name__)
            raise
        else:
            _stop(listener, heartbeat)
            run._finish("finished", run.outcome)
        finally:
            current_run.reset(token)

    def governed_tool(
        self, name: str, action: str = "invoke", *, wait_for_approval: float | bool = False
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """See ``tether.governed_tool``; calls ask the run of the enclosing ``run()`` block."""
        return governed_tool(name, action, wait_for_approval=wait_for_approval)

    def current_run(self) -> Run:
        """The run of the enclosing ``with client.run(...)`` block (for code such as a
        framework's model node that cannot be handed the run); ``NoActiveRun`` outside one."""
        run = current_run.get()
        if not isinstance(run, Run):
            raise NoActiveRun("no `with client.run(...)` block is active here")
        return run

    def _request(
        self,
        path: str,
        token: str,
        body: Mapping[str, Any] | None,
        *,
        retries: int | None = None,
        idempotency_key: str | None = None,
        poll: float | None = None,
    ) -> dict[str, Any]:
        """POST ``body`` (GET without one; a long-poll of ``poll`` seconds with it) with retries
        on connection errors and 5xx; ``TetherUnavailable`` after them."""
        content = None if body is None else encode(body)
        method = "GET" if body is None else "POST"
        headers = request_headers(token, idempotency_key)
        attempts = (self.retries if retries is None else retries) + 1
        cause: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(retry_delay(self.backoff, attempt - 1))
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    headers=headers,
                    params=poll_params(poll),
                    timeout=long_poll_timeout(self.timeout, poll),
                )
            except httpx.TransportError as exc:
                cause = exc
                continue
            if is_retryable(response):
                cause = TetherError(f"{response.status_code} {response.reason_phrase}")
                continue
            return read_response(response)
        raise unavailable(cause)


@dataclass
class Run(RunBase):
    """A running run of the agent: ask before each governed step.

    Every ``check_*`` returns the ``Decision`` when the step may go ahead (``allow`` or
    ``modify``) and raises otherwise: ``Denied`` for ``deny``, ``ApprovalRequired`` for
    ``ask``, ``Deferred`` for ``defer``, ``RunEnded`` once the run is over, and
    ``TetherUnavailable`` when Tether cannot be reached and the posture says fail closed.
    A step that comes back with its approval raises ``ApprovalRejected``,
    ``ChangesRequested`` or ``ApprovalExpired`` when that approval did not let it through.
    """

    client: Client = field(repr=False, compare=False, kw_only=True)
    #: Set once the client learns the run was killed (pushed, or told by a refused step).
    killed: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )
    _waiters: set[threading.Event] = field(
        default_factory=set, init=False, repr=False, compare=False
    )

    def check_tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        action: str = "invoke",
        reason: str | None = None,
        approval: str | None = None,
        preview: Mapping[str, Any] | None = None,
        wait_for_approval: float | bool = False,
    ) -> Decision:
        """May the tool ``name`` do ``action`` with these arguments? Call it with the returned
        decision's ``arguments`` (Tether's modified ones on ``modify``).

        ``approval`` comes back after an ``ask`` with the approved request's id (the same
        arguments). ``preview`` shows the approver what would change, e.g. ``{"format":
        "json", "current": {...}, "proposed": {...}}`` (docs/approvals.md, "The diff"). With ``wait_for_approval`` (True, or at most that many seconds) an ``ask``
        is waited out here: once people decided, the step is asked again with its approval,
        and the answer to that is returned or raised. A wait that runs out raises
        ``ApprovalRequired`` with the request still pending.
        """
        body = self._tool_body(name, arguments, action, reason, approval, preview)
        waits, limit = approval_wait(wait_for_approval)
        if not waits:
            return self._decide(body)
        try:
            return self._decide(body)
        except ApprovalRequired as asked:
            approval_id = self._approval_to_wait_for(asked)
            answer = self.wait_for_approval(approval_id, timeout=limit)
            if not answer.decided:
                raise self._still_pending(asked, answer, limit) from asked
        return self._decide({**body, "approval": approval_id})

    def wait_for_approval(self, approval_id: str, *, timeout: float | None = None) -> Approval:
        """Wait until people decided the approval request ``approval_id`` (or it expired or
        was cancelled), for at most ``timeout`` seconds; None waits until it is decided, which
        it is by its deadline at the latest. Returns its state: ``decided`` is false if the
        timeout came first. Long-polls Tether, ``WAIT_POLL_SECONDS`` at a time, and learns of
        an answer within about a second of it.

        The step has not happened either way: come back with ``check_tool(...,
        approval=approval_id)`` and the same arguments.
        """
        deadline = wait_deadline(timeout)
        while True:
            poll = next_poll(deadline)
            url = approval_url(self.client.url, approval_id, wait=poll is not None)
            approval = Approval.from_json(
                self._unless_killed(functools.partial(self._send, url, None, poll=poll))
            )
            if approval.decided or poll is None or past(deadline):
                return approval

    def _unless_killed(self, work: Callable[[], R]) -> R:
        """Blocking work (a long-poll) that a kill interrupts: it runs in a helper thread
        while this one waits for it or for the kill, whichever comes first. On a kill,
        ``RunKilled`` is raised at once; the helper ends on its own, its answer unused."""
        self.raise_if_killed()
        done = threading.Event()
        box: dict[str, Any] = {}

        def go() -> None:
            try:
                box["result"] = work()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        with self._kill_lock:
            self._waiters.add(done)
        try:
            threading.Thread(target=go, name=f"tether-wait-{self.id}", daemon=True).start()
            done.wait()
        finally:
            with self._kill_lock:
                self._waiters.discard(done)
        if "result" in box:
            return box["result"]  # type: ignore[no-any-return]
        if "error" in box:
            raise box["error"]
        raise self._killed_error()  # woken by the kill

    def _flag_killed(self) -> None:
        self.killed.set()
        with self._kill_lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.set()

    def check_model(
        self,
        model: str,
        estimated_input_tokens: int,
        estimated_output_tokens: int,
        *,
        estimated_cost_usd: float | None = None,
    ) -> Decision:
        """Reserve a model call; call ``decision.model`` (a cheaper one when degraded), then
        ``report_usage`` with what it really used."""
        return self._decide(
            self._model_body(
                model, estimated_input_tokens, estimated_output_tokens, estimated_cost_usd
            )
        )

    def check_memory(self, store: str, write: bool = False) -> Decision:
        """May the run read (or, with ``write=True``, write) this memory store?"""
        return self._decide(self._memory_body(store, write))

    def check_delegate(self, agent: str) -> Decision:
        """May the run hand work to the agent ``agent`` (a sub-agent run)?"""
        return self._decide(self._delegate_body(agent))

    def report_usage(
        self,
        decision: Decision | int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None = None,
        *,
        cached_tokens: int = 0,
        provider: str = "",
    ) -> dict[str, Budget] | None:
        """Reconcile a model call's reservation with what it used; returns the budgets.

        Tether prices the tokens itself (``cached_tokens``: of the input, those read from the
        provider's prompt cache), so spend budgets charge what finance sees; ``cost_usd`` is
        sent for the record and not used.

        The step already happened, so a failure here is logged, not raised (the reservation
        made at decision time still counts against the budgets); ``None`` is returned.
        """
        body = self._usage_body(
            decision, input_tokens, output_tokens, cost_usd, cached_tokens, provider
        )
        if body is None:
            return None
        try:
            data = self._send("usage/", body)
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("usage for decision %s not reported: %s", body["decision"], exc)
            return None
        budgets = data.get("budgets") or {}
        return {str(name): Budget.from_json(value) for name, value in budgets.items()}

    def report_metrics(self, metrics: Mapping[str, float]) -> bool:
        """Report custom numeric metrics of this run (``{"claim_amount": 1250.0}``); drift
        detection compares each across versions. Names are lowercase letters, digits, dots and
        underscores; the last value of a name wins. A failure is logged, not raised."""
        body = self._metrics_body(metrics)
        if body is None:
            return False
        try:
            self._send(self._path("metrics"), body)
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("metrics of run %s not reported: %s", self.id, exc)
            return False
        return True

    def report_metric(self, name: str, value: float) -> bool:
        """Report one custom metric of this run (see ``report_metrics``)."""
        return self.report_metrics({name: value})

    def heartbeat(self) -> None:
        """Extend the run token (the client does this in the background)."""
        data = self._send(self._path("heartbeat"), {}, retries=0)
        self._after_heartbeat(data)

    def _send(
        self,
        path: str,
        body: dict[str, Any] | None,
        *,
        retries: int | None = None,
        idempotency_key: str | None = None,
        poll: float | None = None,
    ) -> dict[str, Any]:
        """A request with the run token; the run is marked over when Tether says it is."""
        self._raise_if_ended()
        try:
            return self.client._request(
                path,
                self.token,
                body,
                retries=retries,
                idempotency_key=idempotency_key,
                poll=poll,
            )
        except RunEnded as exc:
            self._mark_ended(exc)
            raise
        except Unauthorized as exc:
            raise self._token_rejected(exc) from exc

    def _decide(self, body: dict[str, Any]) -> Decision:
        """Ask, retrying with one Idempotency-Key; a ``defer`` is waited out and asked again
        for up to the client's ``defer_timeout`` seconds, then raised as ``Deferred``."""
        key = new_idempotency_key()
        waited = 0.0
        while True:
            try:
                data = self._send("decisions/", body, idempotency_key=key)
            except TetherUnavailable as exc:
                return self._fallback(exc, body)
            delay = self._defer_delay(data, waited, self.client.defer_timeout)
            if delay is None:
                return self._settle(data, body)
            self.client._sleep(delay)
            waited += delay

    def _finish(self, state: str, outcome: str | None) -> None:
        if self.ended:
            return
        try:
            self._send(self._path("finish"), self._finish_body(state, outcome))
        except RunEnded:
            pass  # Tether ended it first (killed, expired): nothing left to finish.
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("run %s not finished in Tether (it will expire): %s", self.id, exc)
        else:
            self.state = state

    def _check_tool_sync(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Decision:
        return self.check_tool(name, arguments, action=action, wait_for_approval=wait)

    async def _check_tool_async(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Decision:
        # An async tool inside a sync run: ask from a worker thread, not on the event loop.
        return await asyncio.to_thread(
            self.check_tool, name, arguments, action=action, wait_for_approval=wait
        )


def _stop(listener: _Control | None, heartbeat: _Heartbeat) -> None:
    if listener is not None:
        listener.stop()
    heartbeat.stop()


class _Control:
    """The run's control socket, held from a daemon thread until the run ends: a kill pushed
    there reaches the run at once (``RunBase._on_control``). A dropped socket is opened again
    after a backoff; one that says the run is over, or refuses the token, is not."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._socket: ClientConnection | None = None
        self._thread = threading.Thread(
            target=self._loop, name=f"tether-control-{run.id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            socket = self._socket
        if socket is not None:
            socket.close()  # ends the thread's recv() at once
        if self._thread is not threading.current_thread():
            # Not long: a thread still opening the socket closes it by itself once it sees.
            self._thread.join(timeout=1.0)

    def _loop(self) -> None:
        run = self._run
        url = control_url(run.client.url, run.id)
        attempt = 0
        while not self._stopped.is_set():
            over = False
            try:
                over = self._listen(url)
            except InvalidStatus as exc:
                over = control_refused(run.id, exc.response.status_code)
            except (OSError, TimeoutError, WebSocketException) as exc:
                log = logger.warning if attempt == 0 else logger.debug
                log("run %s: control socket unavailable, will retry: %s", run.id, exc)
            was_ready, run._control_ready = run._control_ready, False
            if over:
                return
            attempt = 0 if was_ready else attempt + 1
            delay = retry_delay(max(run.client.backoff, MIN_CONTROL_BACKOFF), min(attempt, 8))
            if self._stopped.wait(delay):
                return

    def _listen(self, url: str) -> bool:
        """One connection, until it closes; True when the run is over for the socket."""
        with connect(
            url,
            additional_headers=control_headers(self._run.token),
            user_agent_header=USER_AGENT,
            open_timeout=self._run.client.timeout,
            close_timeout=CONTROL_CLOSE_SECONDS,
        ) as socket:
            with self._lock:
                if self._stopped.is_set():
                    return True
                self._socket = socket
            try:
                while True:
                    try:
                        raw = socket.recv()
                    except ConnectionClosed as closed:
                        if self._stopped.is_set():
                            return True
                        code = closed.rcvd.code if closed.rcvd is not None else None
                        return self._run._on_control_closed(code)
                    if self._run._on_control(raw):
                        return True
            finally:
                with self._lock:
                    self._socket = None


class _Heartbeat:
    """Keeps the run token alive from a daemon thread until the run ends."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"tether-heartbeat-{run.id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._run.client.timeout + 1)

    def _loop(self) -> None:
        interval = self._run.heartbeat_interval()
        while not self._stopped.wait(interval):
            try:
                self._run.heartbeat()
            except RunEnded:
                logger.warning("run %s ended in Tether (%s)", self._run.id, self._run.state)
                return
            except ApiError as exc:
                logger.warning("heartbeat of run %s refused, stopping: %s", self._run.id, exc)
                return
            except (TetherError, httpx.HTTPError) as exc:
                logger.warning("heartbeat of run %s failed, will retry: %s", self._run.id, exc)
