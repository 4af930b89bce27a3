"""The prediction doors' body and answer: what DRF's `request.data` and `Response`
give them, without DRF's per-request machinery in the common case.

A door (REST predict, Open Inference Protocol infer, OpenAI chat completions) reads
one small JSON body and answers one JSON document. DRF's `request.data` finds the
parser again, wraps the body in a stream and unpacks the result on every request, and
a `Response` is a template response rendered after the view returns; inside a
prediction both cost some 50 us together. The two functions here do the same work
directly when the request is the common one and leave every other request to DRF:
what is accepted, every error and every byte of the answer stay DRF's
(`tests/core/test_doors.py`, with DRF as the oracle).
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.http.request import RawPostDataException
from django.http.response import HttpResponseBase
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import ApplicationError
from apps.core.parsers import JSONParser

_JSON = "application/json"


def json_body(request: Request) -> Any:
    """`request.data`, once the declared length is within PREDICT_MAX_BODY_BYTES (a
    413 before anything is read). A non-empty body sent as exactly
    `application/json` to a view whose first parser is the API's JSON parser (the
    one DRF would pick for it) goes to that parser straight away; anything else is
    DRF's `request.data`. What it read is not kept on the request: a later
    `request.data` would parse it again."""
    http = request._request
    meta = http.META
    length = _declared_length(meta)
    if length > settings.PREDICT_MAX_BODY_BYTES:
        raise ApplicationError(
            f"The request body is {length} bytes; the limit is "
            f"{settings.PREDICT_MAX_BODY_BYTES}.",
            code="payload_too_large",
            status_code=413,
        )
    parsers = request.parsers
    # DRF reads a body only when its declared length is a positive integer; without
    # one the data is empty (`{}`), which DRF's own path answers.
    if (
        length > 0
        and parsers
        and isinstance(parsers[0], JSONParser)
        and meta.get("CONTENT_TYPE") == _JSON
    ):
        try:
            raw = http.body
        except RawPostDataException:  # the stream was read before: DRF's way
            return request.data
        return parsers[0].parse(io.BytesIO(raw), _JSON, request.parser_context)
    return request.data


def _declared_length(meta: Any) -> int:
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def json_answer(
    request: Request, body: Any, *, headers: dict[str, str] | None = None
) -> HttpResponseBase:
    """A 200 answer holding `body`, as `Response(body, headers=headers)` would be
    rendered for this request. When the negotiated answer is plain `application/json`
    through DRF's JSON renderer (what a caller gets unless it asks for something
    else, e.g. `Accept: application/json; indent=2`), the body is rendered now into
    a plain `HttpResponse`; otherwise it is DRF's `Response`."""
    renderer: Any = getattr(request, "accepted_renderer", None)
    if (
        type(renderer) is JSONRenderer
        and request.accepted_media_type == _JSON
        and body is not None  # DRF answers None with no body and no content type
    ):
        content_type = renderer.media_type
        if renderer.charset:
            content_type = f"{content_type}; charset={renderer.charset}"
        response = HttpResponse(renderer.render(body, _JSON, {}))
        # In the order a Response has them: its content type first, set again after
        # the view's own headers (a rendered Response's wins over theirs).
        response["Content-Type"] = content_type
        for name, value in (headers or {}).items():
            response[name] = value
        response["Content-Type"] = content_type
        return response
    return Response(body, headers=headers)
