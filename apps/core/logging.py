"""JSON log lines that always carry the request id and the tenant."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from apps.core.context import request_id_var, tenant_var


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        return True


class JsonFormatter(_JsonFormatter):
    def add_fields(self, log_record, record, message_dict) -> None:  # type: ignore[no-untyped-def]
        super().add_fields(log_record, record, message_dict)
        log_record.setdefault("request_id", getattr(record, "request_id", None))
        log_record.setdefault("tenant", getattr(record, "tenant", None))
