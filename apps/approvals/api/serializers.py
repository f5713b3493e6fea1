"""What the approval API answers an agent: the state of one of its requests."""

from __future__ import annotations

from rest_framework import serializers

from ..constants import ApprovalStatus, ExpiryOutcome


class ApprovalStateOutput(serializers.Serializer):
    """``services.approval_state``: what the agent is told about its request (and, with
    ``ask``, the decision's ``approval`` field)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=ApprovalStatus.choices,
        help_text="`expired` means nobody answered in time; it is never reported as rejected.",
    )
    decided = serializers.BooleanField(help_text="False while the request is pending.")
    feedback = serializers.CharField(
        help_text="The approver's reason or requested changes ('' if none)."
    )
    approvals = serializers.IntegerField(help_text="Distinct approvers so far.")
    approvals_required = serializers.IntegerField()
    expires_at = serializers.DateTimeField(
        help_text="Pending: the deadline for an answer. Approved: the step must come back by then."
    )
    on_expiry = serializers.ChoiceField(choices=ExpiryOutcome.choices)
    used = serializers.BooleanField(help_text="An approval lets one step through, once.")
    url = serializers.CharField(help_text="The request's page in the console.")
