"""The runtime's REST adapter: it parses, authenticates and calls the services; no rules."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.api import validated, validated_fast
from apps.common.errors import NotPermitted
from apps.registry.snapshots import version_behaviour

from .. import services
from ..authentication import AgentCredentialAuthentication, RunTokenAuthentication
from ..decisions import DecisionRequest, decide, usage_reconcile
from ..models import AgentCredential, Run
from .serializers import (
    IDEMPOTENCY_KEY_HEADER,
    DecisionInput,
    DecisionOutput,
    RunFinishInput,
    RunOutput,
    RunStartInput,
    RunStartOutput,
    UsageInput,
    decision_payload,
    idempotency_key,
)


class _RunTokenApi(APIView):
    authentication_classes = [RunTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def run_for(self, request: Request, run_id: Any = None) -> Run:
        run = request.auth
        assert isinstance(run, Run)  # RunTokenAuthentication put it there
        if run_id is not None and str(run.pk) != str(run_id):
            raise NotPermitted("This run token belongs to another run.")
        return run


class RunStartApi(APIView):
    authentication_classes = [AgentCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=RunStartInput, responses={201: RunStartOutput}, operation_id="runtime_run_start",
        summary="Exchange an agent credential for a run and its short-lived token",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        data = validated(RunStartInput, request.data)
        credential = request.auth
        assert isinstance(credential, AgentCredential)  # AgentCredentialAuthentication did
        run, token = services.run_start(
            credential=credential,
            task=data["task"],
            intent=data.get("intent", ""),
            on_behalf_of=data.get("on_behalf_of", ""),
            parent_run_id=data.get("parent_run"),
        )
        body = {
            "run": RunOutput(run).data,
            "token": token,
            "failure_posture": run.agent.failure_posture,
            "envelope": run.envelope,
            "behaviour": version_behaviour(run.version),
        }
        return Response(body, status=201)


class RunHeartbeatApi(_RunTokenApi):
    @extend_schema(request=None, responses={200: RunOutput}, operation_id="runtime_run_heartbeat")
    def post(self, request: Request, run_id: str) -> Response:
        run = services.run_heartbeat(run=self.run_for(request, run_id))
        return Response(RunOutput(run).data)


class RunFinishApi(_RunTokenApi):
    @extend_schema(
        request=RunFinishInput, responses={200: RunOutput}, operation_id="runtime_run_finish"
    )
    def post(self, request: Request, run_id: str) -> Response:
        data = validated(RunFinishInput, request.data)
        run = services.run_finish(
            run=self.run_for(request, run_id), state=data["state"], outcome=data.get("outcome", "")
        )
        return Response(RunOutput(run).data)


class DecisionApi(_RunTokenApi):
    @extend_schema(
        parameters=[IDEMPOTENCY_KEY_HEADER],
        request=DecisionInput, responses={200: DecisionOutput}, operation_id="runtime_decide",
        summary="Ask before a governed step: allow, deny, modify, ask or defer",
        description="Recorded before it is answered. Send an Idempotency-Key so that a retry "
        "gets the first answer and is charged once; a `defer` says when to ask again "
        "(`retry_after`, seconds).",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        # Under ASGI this path is served by apps/runtime/api/asgi.py (same rules, leaner).
        answer = decision_answer(
            self.run_for(request), request.data, request.headers.get("Idempotency-Key")
        )
        return Response(answer)


def decision_answer(run: Run, data: Any, key_header: str | None) -> dict[str, Any]:
    """Validate one decision request of ``run``, decide it, and say the answer as JSON data.

    Both adapters of the decision endpoint call this: the DRF view and the lean ASGI one.
    """
    fields = validated_fast(DecisionInput, data)
    key = idempotency_key(key_header)
    decision = decide(run=run, request=DecisionRequest(**fields, idempotency_key=key))
    return decision_payload(decision)


class UsageApi(_RunTokenApi):
    @extend_schema(request=UsageInput, responses={200: dict}, operation_id="runtime_usage")
    def post(self, request: Request) -> Response:
        data = validated(UsageInput, request.data)
        budgets = usage_reconcile(
            run=self.run_for(request),
            decision_id=data["decision"],
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            cached_tokens=data["cached_tokens"],
            provider=data["provider"],
        )
        return Response({"reconciled": True, "budgets": budgets})
