"""``Authorization: Bearer tth_user_...`` for people using the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.common.tokens import digest_matches, parse_lookup

from .models import PersonalToken

# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
LAST_USED_RESOLUTION_SECONDS = 60


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, PersonalToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, plaintext = header.partition(" ")
        if keyword != self.keyword:
            return None
        plaintext = plaintext.strip()
        lookup = parse_lookup(plaintext, "user")
        if lookup is None:
            raise exceptions.AuthenticationFailed("Malformed token: expected tth_user_…")
        now = timezone.now()
        token = (
            PersonalToken.objects.select_related("user")
            .filter(lookup=lookup, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
        if token is None or not digest_matches(plaintext, token.digest) or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if (
            not token.last_used_at
            or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS
        ):
            PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return self.keyword
