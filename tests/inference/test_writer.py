"""The log writer: what a prediction stores is what it was given, byte for byte as
JSON, and an oversized payload is kept as a flagged preview."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.core.context import new_request_id
from apps.inference.writer import log_write
from apps.tenants.demo import seed_demo_content


@pytest.fixture
def group(tenant_a, trained):
    with schema_context("alpha"):
        return seed_demo_content(actor="test")


def _write(group, **fields):  # type: ignore[no-untyped-def]
    rid = new_request_id()
    with schema_context("alpha"):
        member = group.members.first()
        log_write(
            group.pk,
            {
                "request_id": rid,
                "member_id": member.pk,
                "version_id": member.version_id,
                "status": "ok",
                "latency_ms": 1.0,
                **fields,
            },
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT input, output, input_truncated, output_truncated, role "
                f"FROM inference_log_g{group.pk} WHERE request_id = %s",
                [rid],
            )
            row = cursor.fetchone()
    decoded = [json.loads(v) if isinstance(v, str) else v for v in row[:2]]
    return (*decoded, *row[2:])


def test_payloads_are_stored_exactly_as_given(group):
    tricky = {
        "messages": [
            {"role": "user", "content": 'it\'s "quoted", back\\slashed, 100% %s'},
            {"role": "user", "content": "ünïcödé ✓ 日本語 \n\t line"},
        ],
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        "big": 12345678901234567890,
        "small": 1.5e-300,
    }
    output = {"prediction": 1, "probabilities": {"0": 0.25, "1": 0.75}}

    stored_in, stored_out, in_cut, out_cut, role = _write(
        group, input=tricky, output=output
    )

    assert stored_in == tricky and stored_out == output
    assert (in_cut, out_cut) == (False, False)
    assert role == ""  # omitted fields get the table's neutral values


def test_an_oversized_payload_is_a_flagged_preview(settings, group):
    settings.INFERENCE_MAX_PAYLOAD_BYTES = 400
    prompt = {"prompt": "x" * 1000}
    text = json.dumps(prompt, separators=(",", ":"))

    stored_in, stored_out, in_cut, out_cut, _ = _write(
        group, input=prompt, output={"text": "short"}
    )

    assert in_cut is True and out_cut is False
    assert stored_in == {"truncated": True, "bytes": len(text), "preview": text[:100]}
    assert stored_out == {"text": "short"}


def test_a_nul_character_is_logged_as_the_replacement_character(group):
    # jsonb cannot hold NUL: the answer must not fail for it. A backslash followed by
    # the letters u0000 is ordinary text and stays as it is.
    given = {"prompt": "a\u0000b", "\u0000key": "c\\u0000d", "odd": "\\\u0000"}

    stored_in, stored_out, *_ = _write(group, input=given, output={"text": "x\u0000"})

    assert stored_in == {
        "prompt": "a\ufffdb",
        "\ufffdkey": "c\\u0000d",
        "odd": "\\\ufffd",
    }
    assert stored_out == {"text": "x\ufffd"}


def test_infinity_and_nan_are_logged_as_text(group):
    answer = {
        "prediction": float("inf"),
        "low": float("-inf"),
        "p": [float("nan"), 0.5],
    }

    _, stored_out, *_ = _write(group, input={"a": 1.0}, output=answer)

    assert stored_out == {
        "prediction": "Infinity",
        "low": "-Infinity",
        "p": ["NaN", 0.5],
    }
