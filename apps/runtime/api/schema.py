"""OpenAPI description of the agents' Bearer tokens (registered on import)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "apps.runtime.authentication.AgentCredentialAuthentication"
    name = "agentCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "tth_agent_…",
            "description": "An agent credential, issued per environment by the agent's owner.",
        }


class RunTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.runtime.authentication.RunTokenAuthentication"
    name = "runToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "tth_run_…",
            "description": "The run token returned once by POST /api/v1/runtime/runs/.",
        }
