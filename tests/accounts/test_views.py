"""Console pages for people: log in and out, password change, personal API tokens."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import PersonalToken
from apps.accounts.services import token_create

from ..clients import console_client as client_for
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_login_page_logs_a_person_in_and_lands_on_the_overview(org):
    client = Client()
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "<title>Log in · Tether</title>" in page.content.decode()
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_wrong_password_is_a_form_error_not_a_crash(org):
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    long = Client().post(reverse("login"), {"username": "a" * 10000, "password": "x" * 10000})
    assert long.status_code == 200


def test_logout_is_a_post_and_returns_to_login(org):
    client = client_for(org.owner)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("home")).status_code == 302


def test_password_change(org):
    client = client_for(org.owner)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": "a-new-long-passphrase-42", "new_password2": "a-new-long-passphrase-42"},
    )  # fmt: skip
    assert response.status_code == 302
    org.owner.refresh_from_db()
    assert org.owner.check_password("a-new-long-passphrase-42")


def test_creating_a_token_shows_it_once(org):
    client = client_for(org.owner)
    response = client.post(reverse("tokens"), {"name": "CI", "expires_in": "30"})
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    plaintext = re.search(r"tth_user_[0-9a-f]{8}_[A-Za-z0-9_-]+", response.content.decode()).group(
        0
    )
    token = PersonalToken.objects.get(user=org.owner)
    assert token.name == "CI" and token.expires_at is not None
    again = client.get(reverse("tokens")).content.decode()
    assert plaintext not in again
    assert f"tth_user_{token.lookup}_…" in again
    assert "never" in again  # last used


def test_token_list_shows_last_use(org):
    from django.utils import timezone

    token, _ = token_create(user=org.owner, name="CI")
    PersonalToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    body = client_for(org.owner).get(reverse("tokens")).content.decode()
    assert "ago" in body


@pytest.mark.parametrize(
    "data", [{"name": ""}, {"name": "n" * 5000}, {"name": "CI", "expires_in": "forever"}]
)
def test_bad_token_input_is_a_form_error(org, data):
    response = client_for(org.owner).post(reverse("tokens"), data)
    assert response.status_code == 400
    assert not PersonalToken.objects.exists()


def test_revoking_a_token_and_not_someone_elses(org):
    mine, _ = token_create(user=org.owner, name="mine")
    theirs, _ = token_create(user=org.other_owner, name="theirs")
    client = client_for(org.owner)
    assert client.get(reverse("token-revoke", args=[mine.pk])).status_code == 405
    assert client.post(reverse("token-revoke", args=[mine.pk])).status_code == 302
    assert client.post(reverse("token-revoke", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("token-revoke", args=[10**15])).status_code == 404
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None
    assert "Revoked" in client.get(reverse("tokens")).content.decode()


def test_outsiders_can_manage_their_own_tokens_and_password(org):
    client = client_for(org.outsider)
    assert client.get(reverse("tokens")).status_code == 200
    assert client.get(reverse("password_change")).status_code == 200


def test_navigation_follows_roles(org):
    admin = client_for(org.admin).get(reverse("home")).content.decode()
    owner = client_for(org.owner).get(reverse("home")).content.decode()
    outsider = client_for(org.outsider).get(reverse("home")).content.decode()
    assert reverse("audit:log") in admin and reverse("audit:log") not in owner
    assert reverse("registry:agent-list") in owner
    assert reverse("registry:agent-list") not in outsider
