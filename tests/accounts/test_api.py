"""The accounts API: who am I, personal tokens (shown once, stored hashed), the organisation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import PersonalToken

from ..clients import api_client as client_for

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/me/tokens/"


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def test_me_names_the_user_and_their_roles_with_scope(org):
    body = client_for(org.owner).get("/api/v1/me/").json()

    assert body["username"] == "alice"
    assert body["url"] == "http://testserver/api/v1/me/"
    assert body["tokens_url"] == "http://testserver/api/v1/me/tokens/"
    assert body["is_admin"] is False
    assert body["roles"] == [
        {"role": "owner", "scope": "department", "department": "claims", "team": None}
    ]
    finance = client_for(org.finance).get("/api/v1/me/").json()
    assert finance["roles"][0]["scope"] == "organisation"
    assert client_for(org.admin).get("/api/v1/me/").json()["is_admin"] is True


def test_a_new_token_is_shown_once_and_then_authenticates(org):
    created = client_for(org.owner).post(TOKENS, {"name": "CI"}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    plaintext = body["token"]
    assert plaintext.startswith("tth_user_")
    assert body["prefix"] == f"tth_user_{plaintext.split('_')[2]}_…"
    assert body["active"] is True
    assert body["url"] == f"http://testserver/api/v1/me/tokens/{body['id']}/"

    me = bearer(plaintext).get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    listed = bearer(plaintext).get(TOKENS).json()["results"]
    assert [t["name"] for t in listed] == ["CI"]
    assert "token" not in listed[0]
    assert PersonalToken.objects.get().last_used_at is not None


def test_tokens_are_stored_hashed_never_in_plaintext(org):
    plaintext = client_for(org.owner).post(TOKENS, {"name": "CI"}, format="json").json()["token"]
    secret = plaintext.rsplit("_", 1)[1]

    token = PersonalToken.objects.get()
    assert plaintext not in (token.lookup, token.digest, token.name)
    assert len(token.digest) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_personaltoken")
        rows = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert secret not in rows
    assert plaintext not in rows


def test_a_revoked_token_gets_401(org):
    created = client_for(org.owner).post(TOKENS, {"name": "CI"}, format="json").json()
    client = bearer(created["token"])
    assert client.get("/api/v1/agents/").status_code == 200

    revoked = client.delete(created["url"])

    assert revoked.status_code == 204
    after = client.get("/api/v1/agents/")
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "authentication_failed"
    shown = client_for(org.owner).get(created["url"]).json()
    assert shown["active"] is False
    assert shown["revoked_at"] is not None


def test_an_expired_token_gets_401(org):
    token, issued = services.token_create(user=org.owner, name="old")
    PersonalToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))

    response = bearer(issued.plaintext).get("/api/v1/me/")

    assert response.status_code == 401


def test_a_tampered_token_gets_401(org):
    _token, issued = services.token_create(user=org.owner, name="CI")
    tampered = issued.plaintext[:-1] + ("A" if issued.plaintext[-1] != "A" else "B")

    assert bearer(tampered).get("/api/v1/me/").status_code == 401


def test_someone_elses_token_is_a_404(org):
    token, _ = services.token_create(user=org.owner, name="CI")

    shown = client_for(org.other_owner).get(f"{TOKENS}{token.pk}/")
    revoked = client_for(org.other_owner).delete(f"{TOKENS}{token.pk}/")

    assert shown.status_code == 404
    assert revoked.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert client_for(org.owner).get(f"{TOKENS}99999999999999999999999/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 101}, "name"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "CI", "scopes": ["all"]}, "scopes"),
        ({"name": "CI", "expires_at": "yesterday"}, "expires_at"),
        ({"name": "CI", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_bad_token_requests_are_refused_naming_the_field(org, body, field):
    response = client_for(org.owner).post(TOKENS, body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["details"]
    assert not PersonalToken.objects.exists()


def test_a_token_with_an_expiry_is_listed_with_it(org):
    response = client_for(org.owner).post(
        TOKENS, {"name": "CI", "expires_at": "2999-01-01T00:00:00Z"}, format="json"
    )

    assert response.json()["expires_at"] == "2999-01-01T00:00:00Z"


def test_departments_are_listed_with_their_teams(org):
    body = client_for(org.approver).get("/api/v1/departments/").json()
    claims = client_for(org.approver).get("/api/v1/departments/claims/").json()

    assert [d["slug"] for d in body["results"]] == ["claims", "payments"]
    assert body["results"][0]["teams"] == [{"name": "Claims Ops", "slug": "claims-ops"}]
    assert claims["url"] == "http://testserver/api/v1/departments/claims/"


def test_an_outsider_sees_no_departments(org):
    client = client_for(org.outsider)

    assert client.get("/api/v1/departments/").json()["results"] == []
    assert client.get("/api/v1/departments/claims/").status_code == 404
