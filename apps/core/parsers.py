"""Request parsers for the API."""

from __future__ import annotations

import io
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

NUL_MESSAGE = "Text cannot contain the NUL character (\\u0000)."


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with too deep nesting as a 400 instead of a RecursionError
    (500): `[[[...]]]` 100,000 deep fits in any body limit. A NUL character in any
    string or key (`\\u0000`: PostgreSQL stores no text holding it) is a 400 naming
    where it is, as DRF's CharField does for its own fields, before anything is
    done with the request."""

    def parse(
        self, stream: Any, media_type: Any = None, parser_context: Any = None
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(
                "JSON parse error - the document is nested too deeply."
            ) from exc
        if b"\\u0000" in raw:  # rare: only then is the document walked
            where = _nul_path(data, "")
            if where is not None:
                raise ValidationError({where or "body": [NUL_MESSAGE]})
        return data


def _nul_path(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) holding a NUL character."""
    stack = [(value, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return at
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                child = f"{at}.{key}" if at else str(key)
                if "\x00" in key:
                    return child
                stack.append((item, child))
        elif isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                stack.append((node[index], f"{at}.{index}" if at else str(index)))
    return None
