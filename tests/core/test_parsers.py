"""The API's JSON parser and content negotiation answer as DRF's own do
(apps/core/parsers.py): DRF's classes are the oracle."""

from __future__ import annotations

import io
import json
import math

import pytest
from django.http import Http404
from django.test import RequestFactory
from rest_framework import parsers as drf_parsers
from rest_framework.exceptions import NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from apps.core import parsers

BODIES = [
    b'{"inputs": {"a": 1, "b": 2.5, "c": "x"}, "routing_key": "k"}',
    b'{"a": 1, "a": 2}',  # duplicate keys: the last one wins
    b"[1, -0, -0.0, 1e2, 1E-7, 0.1, 3.141592653589793]",
    b'"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00"',  # UTF-8 and escapes, a surrogate pair
    b"9223372036854775807",  # the largest 64-bit integer
    b"123456789012345678901234567890",  # beyond 64 bits: an int, not a float
    b'{"n": 18446744073709551616}',
    b"1.0000000000000000000001",
    b"1e400",  # overflows a double: infinity, as DRF reads it
    b'"\\ud800"',  # a lone surrogate
    b"\xef\xbb\xbf{}",  # a byte order mark
    b"NaN",
    b"[Infinity]",
    b'{"a": 1,}',
    b"{",
    b"",
    b"   ",
    b'"\xff"',  # not UTF-8
    b'"a\tb"',  # a raw control character
    b"[1] [2]",
    b"[" * 300 + b"]" * 300,
    b"[" * 2000 + b"]" * 2000,
    b'{"s": "[[[[{{{{"}',
    b"null",
    b"true",
]


def _outcome(parser, body: bytes, context: dict | None = None):
    try:
        value = parser.parse(io.BytesIO(body), "application/json", context or {})
    except ParseError as exc:
        return ("error", str(exc.detail))
    except RecursionError:
        return ("recursion",)
    return ("ok", json.dumps(value, allow_nan=True), _types(value))


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return type(value).__name__


@pytest.mark.parametrize("body", BODIES, ids=[repr(b[:30]) for b in BODIES])
def test_the_json_parser_reads_what_drf_reads(body):
    ours = _outcome(parsers.JSONParser(), body)
    theirs = _outcome(drf_parsers.JSONParser(), body)
    if theirs == ("recursion",):  # DRF's own parser would be a 500
        assert ours == (
            "error",
            "JSON parse error - the document is nested too deeply.",
        )
    else:
        assert ours == theirs


def test_the_json_parser_honours_another_charset():
    body = '{"name": "café"}'.encode("latin-1")
    context = {"encoding": "latin-1"}
    assert _outcome(parsers.JSONParser(), body, context) == _outcome(
        drf_parsers.JSONParser(), body, context
    )
    assert parsers.JSONParser().parse(io.BytesIO(body), None, context) == {
        "name": "café"
    }


def test_a_deep_document_is_a_parse_error():
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    with pytest.raises(ParseError, match="nested too deeply"):
        parsers.JSONParser().parse(io.BytesIO(body), None, {})


class _Html:
    media_type = "text/html"
    format = "html"


class _Json(JSONRenderer):
    pass


@pytest.mark.parametrize(
    "accept,query,renderers",
    [
        (None, "", [JSONRenderer]),
        ("*/*", "", [JSONRenderer]),
        ("application/json", "", [JSONRenderer]),
        ("application/json; indent=4", "", [JSONRenderer]),
        ("text/html", "", [JSONRenderer]),
        ("text/html, application/json;q=0.9", "", [JSONRenderer]),
        ("application/*", "", [JSONRenderer]),
        (None, "format=json", [JSONRenderer]),
        (None, "format=html", [JSONRenderer]),
        (None, "%66ormat=html", [JSONRenderer]),
        (None, "form%61t=html", [JSONRenderer]),
        (None, "%66ormat=html", [JSONRenderer, _Html]),
        (None, "page=2&search=x", [JSONRenderer]),
        (None, "", [_Html, _Json]),
        ("*/*", "", [_Json, _Html]),
        ("application/json", "", [_Html, _Json]),
    ],
)
def test_negotiation_answers_as_drf_does(accept, query, renderers):
    factory = RequestFactory()
    headers = {"HTTP_ACCEPT": accept} if accept is not None else {}
    path = "/api/v1/groups/" + (f"?{query}" if query else "")

    def outcome(negotiator):
        request = Request(factory.get(path, **headers))
        try:
            renderer, media_type = negotiator.select_renderer(
                request, [r() for r in renderers]
            )
        except NotAcceptable:
            return "406"
        except Http404:
            return "404"
        return type(renderer).__name__, media_type

    assert outcome(parsers.ContentNegotiation()) == outcome(DefaultContentNegotiation())


def test_the_api_negotiates_through_our_class():
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is parsers.ContentNegotiation
