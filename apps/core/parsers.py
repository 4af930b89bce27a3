"""Request parsers and content negotiation for the API."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation

# orjson reads bodies up to this size (above it, it holds two to three times the
# memory the standard library's parser does at its peak).
_SMALL = 64 * 1024
# A body with fewer opening brackets than this cannot nest deeper, which every parser
# here reads without running out of stack.
_SHALLOW = 500
# 19 digits in a row may be an integer beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(rb"\d{19}")
_UTF8 = {"utf-8", "utf8"}


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with too deep nesting as a 400 instead of a RecursionError
    (500): `[[[...]]]` 100,000 deep fits in any body limit.

    A small UTF-8 body is read by orjson (a prediction's body ~20 -> ~3 us) when it
    is shallow and holds no number of 19 digits or more. Whatever orjson refuses (NaN,
    a lone surrogate, a byte order mark, any malformed document) is parsed again by
    DRF's parser, so what is accepted and every error message stay DRF's."""

    def parse(
        self, stream: Any, media_type: Any = None, parser_context: Any = None
    ) -> Any:
        raw = stream.read()
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        if (
            len(raw) <= _SMALL
            and encoding.lower() in _UTF8
            and raw.count(b"[") + raw.count(b"{") < _SHALLOW
            and not _LONG_DIGITS.search(raw)
        ):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(
                "JSON parse error - the document is nested too deeply."
            ) from exc


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answering the common case without parsing anything: no
    format asked for in the URL and an `Accept` header that is absent, `*/*` or
    `application/json`, when the view's first renderer is JSON's. DRF picks that
    renderer and media type for those requests too."""

    def select_renderer(
        self, request: Any, renderers: Any, format_suffix: Any = None
    ) -> Any:
        meta = request.META
        query = meta.get("QUERY_STRING", "")
        override = self.settings.URL_FORMAT_OVERRIDE
        if (
            not format_suffix
            and renderers
            and renderers[0].media_type == "application/json"
            and meta.get("HTTP_ACCEPT", "*/*") in ("*/*", "application/json")
            # no format asked for in the query string, percent-encoded or not
            and (not override or (override not in query and "%" not in query))
        ):
            return renderers[0], "application/json"
        return super().select_renderer(request, renderers, format_suffix)
