"""``governed_tool``: a function whose body runs only when Tether allows the call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ._base import RunBase, approval_wait, current_run
from .errors import NoActiveRun, ProtocolError

if TYPE_CHECKING:
    from .aio import AsyncRun
    from .client import Run

P = ParamSpec("P")
R = TypeVar("R")

_SKIPPED = ("self", "cls")


def active_run() -> Run | AsyncRun | None:
    """The run that governed functions called here would ask, if any."""
    return cast("Run | AsyncRun | None", current_run.get())


def governed_tool(
    name: str, action: str = "invoke", *, wait_for_approval: float | bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a function (sync or async) so that each call asks Tether first.

    The call's arguments, by parameter name, are sent as the tool's arguments to
    ``check_tool`` on the run of the enclosing ``client.run(...)`` block. The body runs only on
    ``allow``, or on ``modify`` with the modified arguments; anything else raises (``Denied``
    and its subclasses) before the body starts. Outside a run, ``NoActiveRun`` is raised.
    A leading ``self`` / ``cls`` parameter is not sent.

    With ``wait_for_approval`` (True: until decided; a number: at most that many seconds) a
    call that must be approved first waits for the people, then asks again with its approval:
    the body runs once they approved; ``ApprovalRejected``, ``ChangesRequested`` (with their
    ``feedback``) or ``ApprovalExpired`` are raised otherwise, ``ApprovalRequired`` when the
    wait ran out. Without it an ``ask`` raises ``ApprovalRequired`` at once.
    """
    approval_wait(wait_for_approval)  # a bad value fails here, not at the first call

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def governed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                run = _require_run(name)
                bound = signature.bind(*args, **kwargs)
                arguments = _arguments(bound)
                decision = await run._check_tool_async(name, arguments, action, wait_for_approval)
                call_args, call_kwargs = _call(signature, bound, arguments, decision.arguments)
                run.raise_if_killed()  # killed while the answer was on its way: do not start
                return await func(*call_args, **call_kwargs)

            return cast(Callable[P, R], governed_async)

        @functools.wraps(func)
        def governed(*args: P.args, **kwargs: P.kwargs) -> R:
            run = _require_run(name)
            bound = signature.bind(*args, **kwargs)
            arguments = _arguments(bound)
            decision = run._check_tool_sync(name, arguments, action, wait_for_approval)
            call_args, call_kwargs = _call(signature, bound, arguments, decision.arguments)
            run.raise_if_killed()  # killed while the answer was on its way: do not start
            return func(*call_args, **call_kwargs)

        return governed

    return decorate


def _require_run(name: str) -> RunBase:
    run = current_run.get()
    if run is None:
        raise NoActiveRun(
            f"{name!r} is a governed tool: call it inside `with client.run(...)` "
            "(or `async with` for AsyncClient)"
        )
    return run


def _arguments(bound: inspect.BoundArguments) -> dict[str, Any]:
    """The call's arguments by name, as Tether sees them: **kwargs flattened, *args a list."""
    parameters = bound.signature.parameters
    arguments: dict[str, Any] = {}
    for index, (name, value) in enumerate(bound.arguments.items()):
        kind = parameters[name].kind
        if index == 0 and name in _SKIPPED and kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            arguments[name] = list(value)
        else:
            arguments[name] = value
    return arguments


def _call(
    signature: inspect.Signature,
    bound: inspect.BoundArguments,
    asked: dict[str, Any],
    answered: dict[str, Any] | None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call the body with: the caller's own unless Tether modified them."""
    if answered is None or answered == asked:
        return bound.args, bound.kwargs
    remaining = dict(answered)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    takes_var_positional = any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()
    )
    for index, (name, parameter) in enumerate(signature.parameters.items()):
        kind = parameter.kind
        if index == 0 and name in _SKIPPED and name in bound.arguments:
            args.append(bound.arguments[name])
            continue
        if kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(remaining.pop(name, ()))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(remaining)
            remaining = {}
        elif kind is inspect.Parameter.POSITIONAL_ONLY or (
            kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and takes_var_positional
        ):
            if name in remaining:
                args.append(remaining.pop(name))
            elif parameter.default is not inspect.Parameter.empty:
                args.append(parameter.default)
            else:
                raise ProtocolError(f"Tether's modified arguments leave out {name!r}")
        elif name in remaining:
            kwargs[name] = remaining.pop(name)
    if remaining:
        unknown = ", ".join(sorted(remaining))
        raise ProtocolError(
            f"Tether's modified arguments name parameters the tool lacks: {unknown}"
        )
    return tuple(args), kwargs
