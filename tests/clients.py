"""Clients signed in as a persona: the console's (a session) and the API's (forced auth)."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient


def console_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
