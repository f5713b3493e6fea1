"""Secrets shown once, stored as a lookup prefix plus an HMAC digest, compared in constant time.

A token reads ``tth_<kind>_<lookup>_<secret>``: the kind says what it is at a glance (and to
secret scanners), the lookup finds the row, the HMAC of the whole token proves it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from django.conf import settings

LOOKUP_LENGTH = 8


@dataclass(frozen=True)
class IssuedToken:
    plaintext: str = field(repr=False)  # shown once, to its owner; never in a log line
    lookup: str
    digest: str


def token_digest(plaintext: str) -> str:
    key = settings.TOKEN_HMAC_KEY.encode()
    return hmac.new(key, plaintext.encode(), hashlib.sha256).hexdigest()


def issue_token(kind: str) -> IssuedToken:
    lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
    plaintext = f"tth_{kind}_{lookup}_{secrets.token_urlsafe(32)}"
    return IssuedToken(plaintext=plaintext, lookup=lookup, digest=token_digest(plaintext))


def parse_lookup(plaintext: str, kind: str) -> str | None:
    """The lookup part of a well-formed token of this kind, else None."""
    prefix = f"tth_{kind}_"
    if not plaintext.startswith(prefix) or len(plaintext) > 200:
        return None
    lookup, sep, _secret = plaintext[len(prefix) :].partition("_")
    if not sep or len(lookup) != LOOKUP_LENGTH:
        return None
    return lookup


def digest_matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(plaintext), digest)
