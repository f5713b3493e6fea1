from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.accounts.models import slug_validator

from .constants import COMMENT_MAX, NAME_MAX, POLICY_TEXT_MAX, RESERVED_SLUGS, SLUG_MAX


def validate_policy_slug(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"{value!r} is reserved; choose another slug.")


class Policy(models.Model):
    """An admin-written Cedar policy: one or more permit/forbid statements.

    ``text`` is the current text, always equal to the newest PolicyVersion's; every change of
    text writes a new version, so the history says who changed what and when. A disabled
    policy stays with its history but takes no part in decisions.
    """

    name = models.CharField(max_length=NAME_MAX)
    slug = models.SlugField(
        max_length=SLUG_MAX, unique=True, validators=[slug_validator, validate_policy_slug]
    )
    description = models.TextField(max_length=2000, blank=True)
    enabled = models.BooleanField(default=True)
    text = models.TextField(max_length=POLICY_TEXT_MAX)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("policy:detail", args=[self.slug])


class PolicyVersion(models.Model):
    """One immutable text of a policy. Rows are only ever inserted."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField(max_length=POLICY_TEXT_MAX)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    author_name = models.CharField(max_length=200)  # frozen: reads the same after a rename
    comment = models.CharField(max_length=COMMENT_MAX, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.policy.slug} v{self.number}"
