"""The doors' body and answer (apps/core/doors.py) are what DRF's `request.data` and
`Response` give, request for request: DRF is the oracle. A view answers each request
twice, once each way, through DRF's whole dispatch."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import doors
from apps.core.parsers import JSONParser

BODIES = [
    b'{"inputs": {"a": 1, "b": 2.5, "c": "x"}, "routing_key": "k"}',
    b'"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00"',
    b"123456789012345678901234567890",
    b"NaN",
    b"{",
    b"",
    b'"\xff"',
    b"[" * 2000 + b"]" * 2000,
    b"a=1&b=2",
    b"null",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
]


class _Echo(APIView):
    """Answers what it read: `doors` or DRF's way, by the view's `way`."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    way = "drf"

    def post(self, request: Request) -> object:
        data = doors.json_body(request) if self.way == "doors" else request.data
        body = {"read": data if isinstance(data, dict | list | str) else repr(data)}
        # The view's own headers, one of which a rendered answer overrides.
        headers = {"X-Read": "yes", "Content-Type": "text/plain", "X-Also": "1"}
        if self.way == "doors":
            return doors.json_answer(request, body, headers=headers)
        return Response(body, headers=headers)


def _call(way: str, body: bytes, content_type: str, **extra: str):
    # As a server passes them, for an empty body too (the factory leaves them out).
    extra = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), **extra}
    request = RequestFactory().generic(
        "POST", "/door/", body, content_type=content_type, **extra
    )
    response = _Echo.as_view(way=way)(request)
    if hasattr(response, "render"):
        response.render()
    return response


def _seen(response) -> tuple:
    return response.status_code, response.content, list(response.items())


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("body", BODIES, ids=[repr(b[:20]) for b in BODIES])
def test_a_door_reads_and_answers_as_drf_does(body, content_type):
    assert _seen(_call("doors", body, content_type)) == _seen(
        _call("drf", body, content_type)
    )


@pytest.mark.parametrize(
    "accept",
    [
        "application/json; indent=2",
        "text/html",
        "application/json;q=0.5, text/html",
        "*/*",
        "application/*",
    ],
)
def test_an_answer_asked_for_otherwise_is_drfs(accept):
    body = b'{"a": [1, 2.5, "\xe2\x80\xa8"]}'
    ours = _call("doors", body, "application/json", HTTP_ACCEPT=accept)
    assert _seen(ours) == _seen(
        _call("drf", body, "application/json", HTTP_ACCEPT=accept)
    )


def test_the_common_request_skips_drfs_machinery(monkeypatch):
    """A JSON body to a JSON answer: the parser is called, DRF's `_parse` is not, and
    the answer is rendered before the view returns (a plain HttpResponse)."""

    def refuse(self):
        raise AssertionError("DRF parsed the body")

    monkeypatch.setattr(Request, "_parse", refuse)
    calls = []
    original = JSONParser.parse

    def spy(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JSONParser, "parse", spy)
    response = _call("doors", b'{"x": "\xe2\x80\xa8"}', "application/json")
    assert calls == [1]
    assert type(response).__name__ == "HttpResponse"
    assert response.content == b'{"read":{"x":"\\u2028"}}'
    assert response["Content-Type"] == "application/json"
    assert response["X-Read"] == "yes"
    assert response["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("length", ["0", "", "x", "-1"])
def test_a_body_without_a_usable_length_is_read_as_drf_reads_it(length):
    ours = _call("doors", b"", "application/json", CONTENT_LENGTH=length)
    assert _seen(ours) == _seen(
        _call("drf", b"", "application/json", CONTENT_LENGTH=length)
    )
    if length == "0":
        assert (ours.status_code, ours.content) == (200, b'{"read":{}}')


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_body_declared_over_the_limit_is_a_413_before_it_is_read(
    settings, monkeypatch, content_type
):
    settings.PREDICT_MAX_BODY_BYTES = 10
    assert _call("doors", b'{"a": 1}', content_type).status_code != 413

    def refuse(self):
        raise AssertionError("the body was read")

    monkeypatch.setattr(JSONParser, "parse", refuse)
    monkeypatch.setattr(Request, "_parse", refuse)
    response = _call("doors", b'{"a": "0123456789"}', content_type)
    assert response.status_code == 413
    assert json.loads(response.content)["error"]["code"] == "payload_too_large"
