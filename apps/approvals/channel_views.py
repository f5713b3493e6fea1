"""The notification channels page (admins): the channels with their last deliveries; add
one; enable, disable or delete one; send a test message now and see how it went.

Its own module (selectors, views) beside the approvals console. Anyone but an admin gets a
404 for every URL here, as for other admin-only objects in the console.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user
from apps.common.errors import ApplicationError
from apps.common.views import never_stored
from apps.registry.forms import apply_service_error

from . import channel_services
from .channel_forms import ChannelForm
from .models import ChannelKind, NotificationChannel, NotificationDelivery
from .notify import is_approvers_channel

BIGINT_MAX = 2**63 - 1
RECENT_DELIVERIES = 5

# --- selectors ---------------------------------------------------------------------------------


def channel_list(*, user: Any) -> QuerySet[NotificationChannel]:
    """Every channel, each with its last deliveries (``recent``): admins only, anyone else none."""
    if not scope_of(user).is_admin:
        return NotificationChannel.objects.none()
    recent = NotificationDelivery.objects.select_related(
        "approval__agent", "approval__tool"
    ).order_by("-created_at", "-pk")[:RECENT_DELIVERIES]
    return NotificationChannel.objects.select_related("department").prefetch_related(
        Prefetch("deliveries", queryset=recent, to_attr="recent")
    )


def channel_get(*, user: Any, channel_id: int) -> NotificationChannel:
    """One channel; for anyone but an admin, or an id that names nothing, a 404."""
    if not scope_of(user).is_admin or channel_id > BIGINT_MAX:
        raise Http404("No such notification channel.")
    return get_object_or_404(
        NotificationChannel.objects.select_related("department"), pk=channel_id
    )


# --- views ---------------------------------------------------------------------------------------


def _require_admin(request: HttpRequest) -> None:
    if not scope_of(request.user).is_admin:
        raise Http404("No such page.")


def _page(
    request: HttpRequest, form: ChannelForm, *, status: int = 200, issued: Any = None
) -> HttpResponse:
    channels = list(channel_list(user=request.user))
    rows = [
        {
            "channel": channel,
            "builtin": is_approvers_channel(channel),
            "shown": channel_services.target_shown(channel),
            "recent": channel.recent,  # type: ignore[attr-defined]  # the Prefetch's to_attr
        }
        for channel in sorted(channels, key=lambda c: (not is_approvers_channel(c), c.name.lower()))
    ]
    context = {
        "section": "approvals",
        "form": form,
        "rows": rows,
        "has_builtin": any(row["builtin"] for row in rows),
        "issued": issued,
    }
    response = render(request, "approvals/channels.html", context, status=status)
    return never_stored(response) if issued else response


@login_required
@require_http_methods(["GET", "POST"])
def channels(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    if request.method != "POST":
        return _page(request, ChannelForm())
    form = ChannelForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            channel = channel_services.channel_create(
                actor=current_user(request),
                name=data["name"],
                kind=data["kind"],
                target=data["target"],
                secret=data["secret"],
                department=data["department"],
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            if channel.kind == ChannelKind.WEBHOOK and not data["secret"]:
                # The generated secret: shown on this response only, for the receiver's config.
                return _page(request, ChannelForm(), status=201, issued=channel)
            messages.success(
                request, f"Added {channel.name}. Send a test to check that messages arrive."
            )
            return redirect("approvals:channels")
    return _page(request, form, status=400)


@login_required
@require_POST
def channel_toggle(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = channel_get(user=request.user, channel_id=channel_id)
    enabled = request.POST.get("enabled") == "true"
    try:
        channel_services.channel_set_enabled(
            actor=current_user(request), channel=channel, enabled=enabled
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        if enabled:
            messages.success(request, f"{channel.name} is enabled: new requests are sent there.")
        else:
            messages.success(request, f"{channel.name} is disabled: nothing more is sent there.")
    return redirect("approvals:channels")


@login_required
@require_POST
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = channel_get(user=request.user, channel_id=channel_id)
    name = channel.name
    try:
        channel_services.channel_delete(actor=current_user(request), channel=channel)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted {name} and its delivery history.")
    return redirect("approvals:channels")


@login_required
@require_POST
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Send a test message now, in this request, and say how it went."""
    channel = channel_get(user=request.user, channel_id=channel_id)
    result = channel_services.channel_test(actor=current_user(request), channel=channel)
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("approvals:channels")
