from django.db import models


class SpanKind(models.TextChoices):
    AGENT = "agent", "Agent"
    WORKFLOW = "workflow", "Workflow"
    LLM = "llm", "LLM call"
    TOOL = "tool", "Tool call"
    RETRIEVAL = "retrieval", "Retrieval"
    MEMORY = "memory", "Memory"
    GUARDRAIL = "guardrail", "Guardrail"
    OTHER = "other", "Other"


class SpanStatus(models.TextChoices):
    UNSET = "unset", "Unset"
    OK = "ok", "OK"
    ERROR = "error", "Error"


# Arguments and results are kept (content only where the instrumentor sent it) but bounded:
# one runaway prompt must not make a row megabytes wide.
PAYLOAD_MAX = 16 * 1024
TRUNCATION_MARKER = "…[truncated {dropped} characters]"

NAME_MAX = 300
IDENT_MAX = 200
MESSAGE_MAX = 2000
ENVIRONMENT_MAX = 32

# Rows per INSERT; keeps each statement well under SQLite's and PostgreSQL's parameter limits.
INSERT_BATCH = 500

# Tokens read tth_ingest_<lookup>_<secret> (apps.common.tokens).
INGEST_KEY_KIND = "ingest"
INGEST_KEY_NAME_MAX = 100
