import logging

from .request_context import get_request_id


class RequestIdFilter(logging.Filter):
    """Stamps each log record with the current request id (or '-')."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id() or "-"
        return True
