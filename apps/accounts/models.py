from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from .constants import Role

slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
    "Use lowercase letters, digits and single hyphens, e.g. claims-triage.",
)


class User(AbstractUser):
    """A person who uses the console or the API. Roles come from RoleAssignment rows."""

    def __str__(self) -> str:
        return self.get_full_name() or self.username

    @property
    def display_name(self) -> str:
        return str(self)


class Department(models.Model):
    """A cost centre and the widest scope below the whole organisation."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=60, unique=True, validators=[slug_validator])
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A team within one department; agents are owned by a person in a team."""

    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="teams")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True, validators=[slug_validator])

    class Meta:
        ordering = ["department__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["department", "name"], name="team_name_unique_in_dept")
        ]

    def __str__(self) -> str:
        return f"{self.department.name} / {self.name}"


class RoleAssignment(models.Model):
    """A role a user holds, across the organisation or scoped to one department or team.

    A role with neither department nor team is organisation-wide.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.CharField(max_length=16, choices=Role.choices)
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(department__isnull=True) | Q(team__isnull=True),
                name="role_scoped_to_department_or_team",
            ),
            models.UniqueConstraint(
                fields=["user", "role", "department", "team"],
                name="role_assignment_unique",
            ),
        ]

    def __str__(self) -> str:
        scope = self.team or self.department or "organisation"
        return f"{self.user} · {self.get_role_display()} · {scope}"


class PersonalToken(models.Model):
    """A person's API token: shown once, kept as a lookup prefix and an HMAC digest."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (tth_user_{self.lookup}_…)"
