"""The asynchronous client: ``AsyncClient`` and the ``AsyncRun`` it starts, the same surface as
the synchronous one with ``async with`` and ``await``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

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


class AsyncClient:
    """``Client`` for asyncio code; see ``tether.Client`` for the arguments."""

    def __init__(
        self,
        url: str | None = None,
        agent_key: str | None = None,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        defer_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.agent_key = resolve_config(url, agent_key)
        check_settings(timeout, retries, backoff, defer_timeout)
        self.defer_timeout = defer_timeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=base_url(self.url),
            timeout=timeout,
            transport=transport,
            headers=default_headers(),
        )
        self._custom_transport = transport is not None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __repr__(self) -> str:
        return f"<tether.AsyncClient {self.url}>"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @asynccontextmanager
    async def run(
        self,
        task: str,
        *,
        intent: str | None = None,
        on_behalf_of: str | None = None,
        parent_run: str | None = None,
        control: bool | None = None,
    ) -> AsyncIterator[AsyncRun]:
        """``async with client.run(task) as run:`` — see ``Client.run``.

        A kill pushed over the control socket cancels the task that entered the block, so
        the work in flight stops at its next ``await``; the block then ends with
        ``RunKilled`` instead of ``CancelledError`` (a cancellation of its own still goes
        on as one)."""
        body: dict[str, Any] = {"task": task}
        for key, value in (
            ("intent", intent),
            ("on_behalf_of", on_behalf_of),
            ("parent_run", parent_run),
        ):
            if value is not None:
                body[key] = value
        wanted = control_wanted(control, self._custom_transport)
        data = await self._request("runs/", self.agent_key, body)
        run = AsyncRun(
            **AsyncRun.fields_from_start(data), client=self, loop=asyncio.get_running_loop()
        )
        listener = (
            asyncio.create_task(_control(run), name=f"tether-control-{run.id}") if wanted else None
        )
        heartbeat = asyncio.create_task(_heartbeat(run), name=f"tether-heartbeat-{run.id}")
        token = current_run.set(run)
        run._block = asyncio.current_task()
        try:
            yield run
        except BaseException as exc:
            run._block = None  # from here on a kill no longer cancels anything
            if run._kill_cancelled(exc):
                await _stop(run, listener, heartbeat)
                raise run._killed_error() from exc
            await _stop(run, listener, heartbeat)
            await run._finish("failed", type(exc).__name__)
            raise
        else:
            run._block = None
            await _stop(run, listener, heartbeat)
            await run._finish("finished", run.outcome)
        finally:
            current_run.reset(token)

    def governed_tool(
        self, name: str, action: str = "invoke", *, wait_for_approval: float | bool = False
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """See ``tether.governed_tool``; calls ask the run of the enclosing ``run()`` block."""
        return governed_tool(name, action, wait_for_approval=wait_for_approval)

    def current_run(self) -> AsyncRun:
        """The run of the enclosing ``async with client.run(...)`` block (for code such as a
        framework's model node that cannot be handed the run); ``NoActiveRun`` outside one."""
        run = current_run.get()
        if not isinstance(run, AsyncRun):
            raise NoActiveRun("no `async with client.run(...)` block is active here")
        return run

    async def _request(
        self,
        path: str,
        token: str,
        body: Mapping[str, Any] | None,
        *,
        retries: int | None = None,
        idempotency_key: str | None = None,
        poll: float | None = None,
    ) -> dict[str, Any]:
        content = None if body is None else encode(body)
        method = "GET" if body is None else "POST"
        headers = request_headers(token, idempotency_key)
        attempts = (self.retries if retries is None else retries) + 1
        cause: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                await self._sleep(retry_delay(self.backoff, attempt - 1))
            try:
                response = await self._http.request(
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
class AsyncRun(RunBase):
    """``Run`` for asyncio code: the same checks, awaited."""

    client: AsyncClient = field(repr=False, compare=False, kw_only=True)
    loop: asyncio.AbstractEventLoop = field(repr=False, compare=False, kw_only=True)
    #: Set once the client learns the run was killed (pushed, or told by a refused step).
    killed: asyncio.Event = field(
        default_factory=asyncio.Event, init=False, repr=False, compare=False
    )
    # The task inside ``async with client.run(...)`` while it is there; a pushed kill
    # cancels it (and says so in ``_cancelled_for_kill``).
    _block: asyncio.Task[Any] | None = field(default=None, init=False, repr=False, compare=False)
    _cancelled_for_kill: bool = field(default=False, init=False, repr=False, compare=False)
    _control_closing: bool = field(default=False, init=False, repr=False, compare=False)

    async def check_tool(
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
        """See ``Run.check_tool``."""
        body = self._tool_body(name, arguments, action, reason, approval, preview)
        waits, limit = approval_wait(wait_for_approval)
        if not waits:
            return await self._decide(body)
        try:
            return await self._decide(body)
        except ApprovalRequired as asked:
            approval_id = self._approval_to_wait_for(asked)
            answer = await self.wait_for_approval(approval_id, timeout=limit)
            if not answer.decided:
                raise self._still_pending(asked, answer, limit) from asked
        return await self._decide({**body, "approval": approval_id})

    async def wait_for_approval(
        self, approval_id: str, *, timeout: float | None = None
    ) -> Approval:
        """See ``Run.wait_for_approval``."""
        deadline = wait_deadline(timeout)
        while True:
            poll = next_poll(deadline)
            url = approval_url(self.client.url, approval_id, wait=poll is not None)
            approval = Approval.from_json(
                await self._unless_killed(self._send(url, None, poll=poll))
            )
            if approval.decided or poll is None or past(deadline):
                return approval

    async def _unless_killed(self, work: Awaitable[R]) -> R:
        """``work`` unless the run is killed first: then it is cancelled and ``RunKilled``
        raised (for a wait outside the block's task, which the kill does not cancel)."""
        job = asyncio.ensure_future(work)
        if self.kill is not None:
            job.cancel()
            self.raise_if_killed()
        killed = asyncio.ensure_future(self.killed.wait())
        try:
            await asyncio.wait({job, killed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            killed.cancel()
            if not job.done():
                job.cancel()
        if job.done() and not job.cancelled():
            return job.result()
        raise self._killed_error()

    def _flag_killed(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.killed.set()
        else:  # a sync tool's worker thread: asyncio.Event belongs to its loop
            self.loop.call_soon_threadsafe(self.killed.set)

    def _after_kill_push(self) -> None:
        if self._block is not None and not self._block.done():
            self._cancelled_for_kill = True
            self._block.cancel("killed by a kill switch")

    def _kill_cancelled(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the cancellation a pushed kill caused, and no other is pending
        (an outer timeout's or a shutdown's goes on as CancelledError)."""
        if not (self._cancelled_for_kill and isinstance(exc, asyncio.CancelledError)):
            return False
        task = asyncio.current_task()
        return task is None or task.uncancel() == 0

    async def check_model(
        self,
        model: str,
        estimated_input_tokens: int,
        estimated_output_tokens: int,
        *,
        estimated_cost_usd: float | None = None,
    ) -> Decision:
        return await self._decide(
            self._model_body(
                model, estimated_input_tokens, estimated_output_tokens, estimated_cost_usd
            )
        )

    async def check_memory(self, store: str, write: bool = False) -> Decision:
        return await self._decide(self._memory_body(store, write))

    async def check_delegate(self, agent: str) -> Decision:
        return await self._decide(self._delegate_body(agent))

    async def report_usage(
        self,
        decision: Decision | int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None = None,
        *,
        cached_tokens: int = 0,
        provider: str = "",
    ) -> dict[str, Budget] | None:
        body = self._usage_body(
            decision, input_tokens, output_tokens, cost_usd, cached_tokens, provider
        )
        if body is None:
            return None
        try:
            data = await self._send("usage/", body)
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("usage for decision %s not reported: %s", body["decision"], exc)
            return None
        budgets = data.get("budgets") or {}
        return {str(name): Budget.from_json(value) for name, value in budgets.items()}

    async def report_metrics(self, metrics: Mapping[str, float]) -> bool:
        """Report custom numeric metrics of this run (``{"claim_amount": 1250.0}``); drift
        detection compares each across versions. Names are lowercase letters, digits, dots and
        underscores; the last value of a name wins. A failure is logged, not raised."""
        body = self._metrics_body(metrics)
        if body is None:
            return False
        try:
            await self._send(self._path("metrics"), body)
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("metrics of run %s not reported: %s", self.id, exc)
            return False
        return True

    async def report_metric(self, name: str, value: float) -> bool:
        """Report one custom metric of this run (see ``report_metrics``)."""
        return await self.report_metrics({name: value})

    async def heartbeat(self) -> None:
        data = await self._send(self._path("heartbeat"), {}, retries=0)
        self._after_heartbeat(data)

    async def _send(
        self,
        path: str,
        body: dict[str, Any] | None,
        *,
        retries: int | None = None,
        idempotency_key: str | None = None,
        poll: float | None = None,
    ) -> dict[str, Any]:
        self._raise_if_ended()
        try:
            return await self.client._request(
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

    async def _decide(self, body: dict[str, Any]) -> Decision:
        """Ask, retrying with one Idempotency-Key; a ``defer`` is waited out and asked again
        for up to the client's ``defer_timeout`` seconds, then raised as ``Deferred``."""
        key = new_idempotency_key()
        waited = 0.0
        while True:
            try:
                data = await self._send("decisions/", body, idempotency_key=key)
            except TetherUnavailable as exc:
                return self._fallback(exc, body)
            delay = self._defer_delay(data, waited, self.client.defer_timeout)
            if delay is None:
                return self._settle(data, body)
            await self.client._sleep(delay)
            waited += delay

    async def _finish(self, state: str, outcome: str | None) -> None:
        if self.ended:
            return
        try:
            await self._send(self._path("finish"), self._finish_body(state, outcome))
        except RunEnded:
            pass  # Tether ended it first (killed, expired): nothing left to finish.
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("run %s not finished in Tether (it will expire): %s", self.id, exc)
        else:
            self.state = state

    async def _check_tool_async(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Decision:
        return await self.check_tool(name, arguments, action=action, wait_for_approval=wait)

    def _check_tool_sync(
        self, name: str, arguments: dict[str, Any], action: str, wait: float | bool
    ) -> Decision:
        """A sync tool inside an async run, e.g. run by a framework in a worker thread: ask on
        the run's event loop and wait here. On the loop's own thread that would deadlock."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise TetherError(
                f"the synchronous governed tool {name!r} was called on the event loop of an "
                "async run; make it `async def`, or call it from a worker thread"
            )
        future = asyncio.run_coroutine_threadsafe(
            self.check_tool(name, arguments, action=action, wait_for_approval=wait), self.loop
        )
        return future.result()


async def _heartbeat(run: AsyncRun) -> None:
    interval = run.heartbeat_interval()
    while True:
        await asyncio.sleep(interval)
        try:
            await run.heartbeat()
        except RunEnded:
            logger.warning("run %s ended in Tether (%s)", run.id, run.state)
            return
        except ApiError as exc:
            logger.warning("heartbeat of run %s refused, stopping: %s", run.id, exc)
            return
        except (TetherError, httpx.HTTPError) as exc:
            logger.warning("heartbeat of run %s failed, will retry: %s", run.id, exc)


async def _control(run: AsyncRun) -> None:
    """The run's control socket until the run ends; see ``client._Control``."""
    url = control_url(run.client.url, run.id)
    attempt = 0
    while True:
        over = False
        try:
            over = await _listen(run, url)
        except InvalidStatus as exc:
            over = control_refused(run.id, exc.response.status_code)
        except (OSError, TimeoutError, WebSocketException) as exc:
            log = logger.warning if attempt == 0 else logger.debug
            log("run %s: control socket unavailable, will retry: %s", run.id, exc)
        was_ready, run._control_ready = run._control_ready, False
        if over:
            return
        attempt = 0 if was_ready else attempt + 1
        await asyncio.sleep(
            retry_delay(max(run.client.backoff, MIN_CONTROL_BACKOFF), min(attempt, 8))
        )


async def _listen(run: AsyncRun, url: str) -> bool:
    """One connection, until it closes; True when the run is over for the socket."""
    async with connect(
        url,
        additional_headers=control_headers(run.token),
        user_agent_header=USER_AGENT,
        open_timeout=run.client.timeout,
        close_timeout=CONTROL_CLOSE_SECONDS,
    ) as socket:
        while True:
            try:
                raw = await socket.recv()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                return run._on_control_closed(code)
            if run._on_control(raw):
                run._control_closing = True  # the close below is let finish (_stop)
                return True


async def _stop(
    run: AsyncRun, listener: asyncio.Task[None] | None, heartbeat: asyncio.Task[None]
) -> None:
    if listener is not None:
        if run._control_closing:
            # It is ending by itself, closing its socket: cancelled in the middle of the close
            # handshake, it would leave the connection open.
            await asyncio.wait({listener}, timeout=CONTROL_CLOSE_SECONDS + 0.5)
        await _cancel(listener)
    await _cancel(heartbeat)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Stop the heartbeat; unlike awaiting it, waiting does not swallow our own cancellation."""
    task.cancel()
    await asyncio.wait([task])
