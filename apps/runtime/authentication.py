"""Machine identities for the runtime API: agent credentials and run tokens (Bearer)."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from . import services
from .models import AgentCredential, Run


class _AgentPrincipal:
    """The ``request.user`` of an agent call: authenticated, but not a person."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    pk = None

    def __init__(self, slug: str) -> None:
        self.username = slug

    def get_username(self) -> str:
        return self.username


class _BearerAuthentication(authentication.BaseAuthentication):
    prefix = ""

    def _token(self, request: Any) -> str | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        keyword, _, token = header.partition(" ")
        token = token.strip()
        if keyword != "Bearer" or not token.startswith(self.prefix):
            return None
        return token

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"


class AgentCredentialAuthentication(_BearerAuthentication):
    prefix = "tth_agent_"

    def authenticate(self, request: Any) -> tuple[Any, AgentCredential] | None:
        token = self._token(request)
        if token is None:
            return None
        try:
            credential = services.credential_authenticate(token)
        except services.Unauthenticated as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return _AgentPrincipal(credential.agent.slug), credential


RUN_TOKEN_PREFIX = "tth_run_"


class RunKilledFailed(exceptions.AuthenticationFailed):
    """A killed run's token: the API's error code says so (``run_killed``), as the decision
    endpoint's does, so an SDK can tell a kill from a bad token."""

    default_code = "run_killed"


class RunTokenAuthentication(_BearerAuthentication):
    prefix = RUN_TOKEN_PREFIX

    def authenticate(self, request: Any) -> tuple[Any, Run] | None:
        token = self._token(request)
        if token is None:
            return None
        try:
            run = services.run_authenticate(token)
        except services.RunKilledToken as exc:
            raise RunKilledFailed(exc.message) from exc
        except services.Unauthenticated as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return _AgentPrincipal(run.agent.slug), run
