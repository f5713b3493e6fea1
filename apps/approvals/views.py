"""The approvals console: the inbox, one request with its diff and blast radius, the gates
and risk mappings, and delegations of approval authority.

Views parse input, call a selector or a service, and render. A request outside the user's
scope is a 404 (the selector decides); an answer a rule refuses comes back as a message.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotFound
from apps.common.htmx import htmx_partial
from apps.registry.constants import RiskClass
from apps.runtime.models import Decision

from . import selectors, services
from .constants import ARGUMENTS_SHOWN_MAX, ApprovalStatus, Verdict
from .diffs import render_preview
from .forms import ActionRiskForm, AnswerForm, DelegationForm, GateForm, InboxFilterForm
from .gates import default_gate
from .live import INBOX_SOCKET_PATH
from .models import ActionRisk, RiskGate

RUN_SO_FAR = 12  # the run's last decisions shown with a request


def _approval_or_404(user: Any, approval_id: Any) -> Any:
    try:
        return selectors.approval_get(user=user, approval_id=approval_id)
    except NotFound:
        raise Http404("No such approval request.") from None


@role_required
def inbox(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = InboxFilterForm(request.GET or None)
    sort, risk = form.values()
    context = {
        "section": "approvals",
        "form": form,
        "sort": sort,
        "risk": risk,
        "rows": selectors.inbox_page(user=user, sort=sort, risk=risk),
        "counts": selectors.inbox_counts(user=user),
        "risks": RiskClass.choices,
        "may_approve": selectors.may_approve_anything(user),
        "decided": selectors.decided_for_user(user=user, limit=20),
        "socket_path": INBOX_SOCKET_PATH,
        "now": timezone.now(),
    }
    return htmx_partial(request, "approvals/inbox.html", context, "approvals/partials/queue.html")


@role_required
def detail(request: HttpRequest, approval_id: Any) -> HttpResponse:
    user = current_user(request)
    approval = _approval_or_404(user, approval_id)
    services.approval_viewed(approval=approval, user=user)
    return _detail_page(request, approval, AnswerForm())


def _detail_page(
    request: HttpRequest, approval: Any, form: AnswerForm, status: int = 200
) -> HttpResponse:
    user = current_user(request)
    authority = selectors.authority_for(user, approval)
    block = selectors.answer_block(user, approval, authority) if approval.is_open else ""
    arguments = json.dumps(approval.arguments, indent=2, sort_keys=True, default=str)
    context = {
        "section": "approvals",
        "approval": approval,
        "form": form,
        "blocked_because": block,
        "acting_for": authority.acting_for if authority and not block else None,
        "votes": list(approval.votes.select_related("acting_for")),
        "arguments_text": arguments[:ARGUMENTS_SHOWN_MAX],
        "arguments_cut": len(arguments) > ARGUMENTS_SHOWN_MAX,
        "preview": render_preview(approval.preview),
        "blast": approval.blast_radius,
        "run_so_far": list(
            Decision.objects.filter(run_id=approval.run_id).order_by("-id")[:RUN_SO_FAR]
        )[::-1],
        "events": list(
            AuditEvent.objects.filter(
                target_type=services.APPROVAL_TARGET, target_id=str(approval.pk)
            ).order_by("id")
        ),
        "socket_path": INBOX_SOCKET_PATH,
        "now": timezone.now(),
    }
    return render(request, "approvals/detail.html", context, status=status)


@require_POST
@role_required
def answer(request: HttpRequest, approval_id: Any) -> HttpResponse:
    user = current_user(request)
    approval = _approval_or_404(user, approval_id)
    form = AnswerForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, approval, form, status=400)
    verdict = form.cleaned_data["verdict"]
    try:
        approval = services.approval_answer(
            approval=approval, actor=user, verdict=verdict, comment=form.cleaned_data["comment"]
        )
    except ApplicationError as exc:
        form.add_error("comment" if exc.details and "comment" in exc.details else None, exc.message)
        approval.refresh_from_db()
        return _detail_page(request, approval, form, status=409 if exc.http_status == 409 else 400)
    messages.success(request, _answered_message(approval, verdict))
    if request.POST.get("next") == "inbox":
        return redirect("approvals:inbox")
    return redirect("approvals:detail", approval.pk)


def _answered_message(approval: Any, verdict: str) -> str:
    if verdict == Verdict.APPROVE and approval.status == ApprovalStatus.PENDING:
        have = approval.votes.filter(verdict=Verdict.APPROVE).count()
        return f"Approval recorded ({have} of {approval.approvals_required}); it needs another approver."
    if verdict == Verdict.ESCALATE:
        return "Escalated to the second tier."
    return f"The request is {approval.get_status_display().lower()}; the agent has been told."


@require_POST
@role_required
def bulk_approve(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    ids = request.POST.getlist("approvals")[:200]
    found = []
    for approval_id in ids:
        try:
            found.append(_approval_or_404(user, approval_id))
        except (Http404, ValidationError, ValueError):
            continue  # not theirs, or not an id: skipped, the rest still count
    if not found:
        messages.error(request, "Select the low-risk requests to approve.")
        return redirect("approvals:inbox")
    done, problems = services.bulk_approve(approvals=found, actor=user)
    if done:
        messages.success(request, f"Approved {done} low-risk request{'s' if done != 1 else ''}.")
    for problem in problems[:10]:
        messages.error(request, problem)
    return redirect("approvals:inbox")


@role_required
def gates(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    is_admin = scope_of(user).is_admin
    gate_form, risk_form = GateForm(prefix="gate"), ActionRiskForm(prefix="risk")
    if request.method == "POST":
        if not is_admin:
            raise Http404
        what = request.POST.get("form")
        try:
            if what == "gate":
                gate_form = GateForm(request.POST, prefix="gate")
                if gate_form.is_valid():
                    _gate_set(user, gate_form.cleaned_data)
                    messages.success(request, "Gate saved; decisions follow it at once.")
                    return redirect("approvals:gates")
            elif what == "risk":
                risk_form = ActionRiskForm(request.POST, prefix="risk")
                if risk_form.is_valid():
                    data = risk_form.cleaned_data
                    services.action_risk_set(
                        actor=user, tool=data["tool"], action=data["action"].strip(),
                        risk_class=data["risk_class"], agent=data["agent"],
                    )  # fmt: skip
                    messages.success(request, "Risk mapping saved.")
                    return redirect("approvals:gates")
            elif what == "clear-gate":
                services.gate_clear(
                    actor=user, gate=get_object_or_404(RiskGate, pk=_row_id(request))
                )
                messages.success(
                    request,
                    "Gate removed; the class falls back to the organisation's gate or the default.",
                )
                return redirect("approvals:gates")
            elif what == "clear-risk":
                mapping = get_object_or_404(ActionRisk, pk=_row_id(request))
                services.action_risk_clear(actor=user, mapping=mapping)
                messages.success(request, "Risk mapping removed.")
                return redirect("approvals:gates")
        except ApplicationError as exc:
            target = gate_form if what == "gate" else risk_form
            for field, errors in (exc.details or {}).items():
                for error in errors:
                    target.add_error(None, f"{field.replace('_', ' ')}: {error}")
            if not exc.details:
                target.add_error(None, exc.message)
    rows = selectors.gates_table()
    organisation = {g.risk_class: g for g in rows if g.agent_id is None}
    context = {
        "section": "approvals",
        "is_admin": is_admin,
        "classes": [
            (value, label, organisation.get(value), default_gate(value))
            for value, label in RiskClass.choices
        ],
        "overrides": [g for g in rows if g.agent_id is not None],
        "mappings": list(ActionRisk.objects.select_related("tool", "agent")),
        "gate_form": gate_form,
        "risk_form": risk_form,
    }
    return render(
        request, "approvals/gates.html", context, status=400 if request.method == "POST" else 200
    )


def _row_id(request: HttpRequest) -> int:
    """The ``id`` a remove button posts; anything but a number is no such row (404)."""
    raw = request.POST.get("id", "")
    if not raw.isdigit() or len(raw) > 18:
        raise Http404("No such row.")
    return int(raw)


def _gate_set(user: Any, data: dict[str, Any]) -> None:
    escalate = data.get("escalate_after_minutes")
    services.gate_set(
        actor=user,
        risk_class=data["risk_class"],
        outcome=data["outcome"],
        agent=data["agent"],
        approvals_required=data["approvals_required"],
        expires_after_seconds=data["expires_after_minutes"] * 60,
        on_expiry=data["on_expiry"],
        escalate_after_seconds=escalate * 60 if escalate else None,
    )


@login_required
def delegations(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = DelegationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.delegation_create(
                actor=user, delegator=user, delegate=data["delegate"],
                starts_at=data["starts_at"], ends_at=data["ends_at"], reason=data["reason"],
            )  # fmt: skip
            messages.success(
                request,
                f"{data['delegate'].get_username()} may answer in your place during that period.",
            )
            return redirect("approvals:delegations")
        except ApplicationError as exc:
            form.add_error(None, exc.message)
    now = timezone.now()
    rows = list(selectors.delegations_for_user(user=user))
    context = {
        "section": "approvals",
        "form": form,
        "active": [d for d in rows if d.revoked_at is None and d.ends_at > now],
        "past": [d for d in rows if d.revoked_at is not None or d.ends_at <= now][:30],
        "may_delegate": selectors.may_approve_anything(user),
        "default_end": (now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
    }
    return render(
        request,
        "approvals/delegations.html",
        context,
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@login_required
def delegation_revoke(request: HttpRequest, delegation_id: int) -> HttpResponse:
    user = current_user(request)
    delegation = selectors.delegations_for_user(user=user).filter(pk=delegation_id).first()
    if delegation is None:
        raise Http404
    try:
        services.delegation_revoke(actor=user, delegation=delegation)
        messages.success(request, "Delegation ended.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("approvals:delegations"))
