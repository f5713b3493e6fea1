from django.db import models

REASON_MAX = 1000
KILLED_OUTCOME = "killed"


class KillScope(models.TextChoices):
    RUN = "run", "One run"
    AGENT = "agent", "An agent (all its runs)"
    TEAM = "team", "A team"
    DEPARTMENT = "department", "A department"
    GLOBAL = "global", "Everything"
