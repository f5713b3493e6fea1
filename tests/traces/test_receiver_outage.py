"""The OTLP receiver while PostgreSQL is really down (a private cluster, stopped and started)."""

from __future__ import annotations

import pytest
from django.db import close_old_connections, connection

from tests.runtime.servers import private_postgres  # noqa: F401  (autouse: this module's cluster)

from .conftest import export, make_span

URL = "/v1/traces"


def post(client, sender):
    """One request; between requests Django drops a broken connection (the test client would
    skip close_old_connections, so it is called here as the request signals would)."""
    close_old_connections()
    return client.post(
        URL,
        export(make_span()).SerializeToString(),
        content_type="application/x-protobuf",
        **sender.auth,
    )


@pytest.mark.django_db(transaction=True)
def test_the_database_being_down_is_a_503_with_retry_after_then_spans_are_stored(
    client,
    sender,
    private_postgres,  # noqa: F811
):
    assert post(client, sender).status_code == 200
    private_postgres.stop()
    try:
        response = post(client, sender)
    finally:
        private_postgres.start()
        if connection.pool is not None:  # drop the connections the stop killed
            connection.pool.check()
    # A stock exporter retries a 503 after Retry-After: nothing is dropped silently.
    assert response.status_code == 503
    assert response["Retry-After"]
    assert post(client, sender).status_code == 200
