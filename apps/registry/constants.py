from django.db import models

NAME_MAX = 100
SLUG_MAX = 60
TAG_MAX = 40
TAGS_MAX_COUNT = 20
SCHEMA_MAX_BYTES = 64 * 1024
JSON_FIELD_MAX_BYTES = 16 * 1024
INSTRUCTIONS_MAX = 50_000
TOOL_ACTIONS_MAX = 20
RUN_TOKEN_TTL_DEFAULT = 15 * 60
RUN_TOKEN_TTL_MIN = 60
RUN_TOKEN_TTL_MAX = 24 * 60 * 60


class Environment(models.TextChoices):
    DEV = "dev", "Development"
    STAGING = "staging", "Staging"
    CANARY = "canary", "Canary"
    PROD = "prod", "Production"


ENVIRONMENT_ORDER = [e.value for e in Environment]


class AgentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    RETIRED = "retired", "Retired"


class AutonomyLevel(models.IntegerChoices):
    """How far an agent may act without a person; docs/autonomy-levels.md defines each."""

    L0 = 0, "L0 · Suggest only"
    L1 = 1, "L1 · Assisted"
    L2 = 2, "L2 · Supervised"
    L3 = 3, "L3 · Delegated"
    L4 = 4, "L4 · Fully autonomous"


class FailurePosture(models.TextChoices):
    """What the runtime answers when Tether itself cannot decide."""

    CLOSED = "fail_closed", "Fail closed (deny)"
    READ_ONLY = "read_only", "Read-only (allow reads, deny writes)"
    OPEN = "fail_open", "Fail open (allow and audit)"


class RiskClass(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


RISK_ORDER = [r.value for r in RiskClass]


class PreviewFormat(models.TextChoices):
    JSON = "json", "JSON (current and proposed)"
    TEXT = "text", "Text (current and proposed)"
    TABLE = "table", "Table (current and proposed rows)"
    UNIFIED = "unified", "Unified diff"


class MemoryClass(models.TextChoices):
    WORKING = "working", "Working (lives and dies with the run)"
    SESSION = "session", "Session"
    DURABLE = "durable", "Durable"
    SHARED = "shared", "Shared"
    FORBIDDEN = "forbidden", "Forbidden (never written by agents)"


class MemoryAccess(models.TextChoices):
    READ = "read", "Read"
    READ_WRITE = "read_write", "Read and write"


DEFAULT_DATA_CLASSES = [
    ("public", "Public", "Published or publishable information."),
    ("internal", "Internal", "For employees; low harm if disclosed."),
    ("confidential", "Confidential", "Business secrets, contracts, plans."),
    ("pii", "PII", "Personal data about an identifiable person."),
    ("financial", "Financial", "Payments, accounts, ledgers, card data."),
    ("regulated", "Regulated", "Health, legal or other data under a regulator's rules."),
]
