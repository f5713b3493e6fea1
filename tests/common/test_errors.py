"""One error shape for the whole API, whatever went wrong, and never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.common.errors import ApplicationError, NotPermitted, api_exception_handler

from ..clients import api_client as client_for

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["message"], body
    return body["error"]


def test_no_credentials_is_a_401_in_the_error_shape(org):
    response = APIClient().get(AGENTS)

    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Bearer tth_user_abcdefgh_secret", "Bearer " + "x" * 5000],
    ids=["malformed", "unknown", "huge"],
)
def test_a_bad_token_is_a_401_in_the_error_shape(org, header):
    response = APIClient().get(AGENTS, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_a_refused_change_is_a_403_in_the_error_shape(org):
    response = client_for(org.approver).post("/api/v1/tools/", {}, format="json")

    # Field errors come first: the approver is refused by the service once the body is valid.
    assert response.status_code == 400
    valid = {"name": "T", "slug": "t", "description": "d", "actions": ["read"]}
    refused = client_for(org.approver).post("/api/v1/tools/", valid, format="json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "permission_denied"


def test_an_unknown_api_path_is_a_json_404(org):
    response = client_for(org.owner).get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unknown_object_is_a_404_in_the_error_shape(org):
    response = client_for(org.owner).get(f"{AGENTS}no-such-agent/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_method_the_endpoint_does_not_have_is_a_405(org):
    response = client_for(org.owner).delete(AGENTS)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_is_a_400_that_says_so(org):
    response = client_for(org.owner).post(AGENTS, '{"name": "x",', content_type="application/json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "parse_error"
    assert "JSON parse error" in error["message"]


def test_nan_is_not_json(org):
    response = client_for(org.owner).post(
        AGENTS, '{"parameters": {"x": NaN}}', content_type="application/json"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


@pytest.mark.parametrize("payload", ['["a", "b"]', '"a string"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_a_400(org, payload):
    response = client_for(org.owner).post(AGENTS, payload, content_type="application/json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "non_field_errors" in error["details"]


def test_an_empty_body_is_a_400_listing_the_required_fields(org):
    response = client_for(org.owner).post(AGENTS, "", content_type="application/json")

    assert response.status_code == 400
    assert {"name", "slug", "mission", "department"} <= set(error_of(response)["details"])


def test_a_body_over_the_upload_limit_is_a_413(org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = '{"name": "' + "x" * 2000 + '"}'

    response = client_for(org.owner).post(AGENTS, body, content_type="application/json")

    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_huge_body_at_the_default_limit_is_refused(org):
    body = '{"mission": "' + "x" * (3 * 1024 * 1024) + '"}'

    response = client_for(org.owner).post(AGENTS, body, content_type="application/json")

    assert response.status_code == 413
    error_of(response)


def test_a_body_in_a_content_type_the_endpoint_does_not_read_is_a_415(org):
    response = client_for(org.owner).post(AGENTS, "name=x", content_type="text/plain")
    form = client_for(org.owner).post(
        AGENTS, "name=x", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert form.status_code == 415


def test_an_unsupported_charset_is_a_400(org):
    response = client_for(org.owner).post(
        AGENTS, b"x\x00\x00", content_type="application/json; charset=bz2_codec"
    )

    assert response.status_code == 400
    error_of(response)


def test_application_errors_map_to_their_status_with_details():
    response = api_exception_handler(
        ApplicationError("Bad slug.", details={"slug": ["Taken."]}), {}
    )
    refused = api_exception_handler(NotPermitted("No."), {})

    assert response is not None and refused is not None
    assert response.status_code == 400
    assert response.data == {
        "error": {"code": "invalid", "message": "Bad slug.", "details": {"slug": ["Taken."]}}
    }
    assert refused.status_code == 403
    assert refused.data["error"]["code"] == "permission_denied"
