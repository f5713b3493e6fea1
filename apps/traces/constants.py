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

# --- console: runs, timelines and live views -------------------------------------------------

RUNS_PER_PAGE = 50
TRACES_PER_PAGE = 50
# The lists count at most this many matches ("10,000+"): a count visits every match.
LIST_COUNT_CAP = 10_000
# A run page shows at most this many spans (the JSON timeline at most TIMELINE_API_SPANS_MAX);
# beyond it the page says how many it left out.
TIMELINE_SPANS_MAX = 2000
TIMELINE_API_SPANS_MAX = 10_000
# The live fleet page: running runs, and those that ended this recently (so a state change is
# seen), at most FLEET_MAX rows.
FLEET_MAX = 200
FLEET_RECENT_SECONDS = 600

# Live views (apps/traces/live.py). A row whose id was seen this long ago settles every smaller
# id: a transaction that had not committed by then is taken to have rolled back. It must be
# longer than any ingest or decision transaction (plus clock skew between web processes).
LIVE_GRACE_SECONDS = 10.0
# How often an open run page's consumer checks for new decisions, run events and spans
# (spans also wake it at once through the channel layer), and how often the fleet refreshes.
LIVE_TICK_SECONDS = 0.5
FLEET_TICK_SECONDS = 1.0
# At most this many new rows of one kind per message; the rest follow on the next tick.
LIVE_BATCH_MAX = 500
# An open page renews its interest in its run's notifications this often, for this long.
LIVE_INTEREST_TTL_SECONDS = 30
LIVE_INTEREST_RENEW_SECONDS = 10.0
# A consumer re-checks that its user may still see the run this often.
LIVE_RECHECK_SECONDS = 30.0
# After a failed notification the ingest side stays quiet this long (a page's tick still
# catches up): a Redis outage must not add a timeout to every export.
LIVE_QUIET_SECONDS = 5.0
LIVE_SEND_TIMEOUT_SECONDS = 0.5
# The fallback when the websocket is closed: the page polls this often.
LIVE_POLL_SECONDS = 2
