"""Resource limits: whatever the size or shape of a hostile request, the answer is a
4xx with the error envelope within a second, never a 500 (reliability item 7)."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django_tenants.utils import schema_context

from apps.tenants.demo import DEMO_GROUP, demo_rows, seed_demo_content

PREDICT = f"/api/v1/groups/{DEMO_GROUP}/predict/"
# Seconds of this thread's CPU (the test client serves the request in this thread):
# the work a hostile request costs, unaffected by what else the machine is running.
BUDGET = 1.0


@pytest.fixture
def alpha_client(tenant_a, make_key, api_client):  # type: ignore[no-untyped-def]
    """A manage key's client on alpha's host."""
    _, key = make_key(tenant_a, scope="manage")
    return api_client(tenant_a, key=key)


@pytest.fixture
def alpha_api(tenant_a, alpha_client):  # type: ignore[no-untyped-def]
    """The same, with the demo group to predict with (about 4 s to train)."""
    with schema_context(tenant_a.schema_name):
        seed_demo_content(actor="test")
    return alpha_client


def _refused(response, started: float, *statuses: int) -> None:  # type: ignore[no-untyped-def]
    elapsed = time.thread_time() - started
    assert response.status_code in statuses, (
        response.status_code,
        response.content[:300],
    )
    body = response.json()
    assert set(body) >= {"error", "request_id"} and body["error"]["code"]
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


def _post_raw(client, path: str, body: bytes):  # type: ignore[no-untyped-def]
    return client.generic("POST", path, body, content_type="application/json")


def test_oversized_prediction_body_is_413_before_parsing(alpha_api):
    body = json.dumps({"inputs": demo_rows(1)[0], "pad": "x" * 2_000_000}).encode()
    started = time.thread_time()
    response = _post_raw(alpha_api, PREDICT, body)
    _refused(response, started, 413)
    assert response.json()["error"]["code"] == "payload_too_large"


def test_prediction_batch_over_the_limit_is_refused(alpha_api):
    rows = demo_rows(1) * 5_000  # about 4 MB of real rows
    started = time.thread_time()
    response = alpha_api.post(PREDICT, {"inputs": rows}, format="json")
    _refused(response, started, 413)


def test_many_empty_rows_under_the_byte_limit_are_refused_quickly(alpha_api):
    # 300,000 rows in 900 kB: under the byte limit, so validation must be cheap.
    body = b'{"inputs": [' + b",".join([b"{}"] * 300_000) + b"]}"
    started = time.thread_time()
    response = _post_raw(alpha_api, PREDICT, body)
    _refused(response, started, 400)
    assert response.json()["error"]["fields"]["inputs"] == [
        "300000 rows; a batch holds at most 1000"
    ]


@pytest.mark.parametrize(
    "path", [PREDICT, "/api/v1/groups/", "/api/v1/models/transform/"]
)
def test_deeply_nested_json_is_a_400(alpha_api, path):
    depth = 100_000  # far past Python's recursion limit
    body = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    started = time.thread_time()
    response = _post_raw(alpha_api, path, body)
    _refused(response, started, 400, 413)


@override_settings(DATASET_MAX_BYTES=1024 * 1024)
def test_huge_csv_upload_is_refused(alpha_client):
    row = b"1.0,2.0,3.0,0\n"
    data = b"a,b,c,label\n" + row * (5 * 1024 * 1024 // len(row))  # 5 MB
    started = time.thread_time()
    response = alpha_client.post(
        "/api/v1/datasets/",
        {"file": SimpleUploadedFile("huge.csv", data, "text/csv"), "name": "huge"},
        format="multipart",
    )
    _refused(response, started, 400, 413)
    assert "larger than the limit" in response.json()["error"]["message"]


def test_a_million_columns_csv_is_refused(alpha_client):
    header = ",".join(f"c{i}" for i in range(1_000_000)).encode()
    data = header + b"\n" + b",".join([b"1"] * 1_000_000) + b"\n"
    started = time.thread_time()
    response = alpha_client.post(
        "/api/v1/datasets/",
        {"file": SimpleUploadedFile("wide.csv", data, "text/csv"), "name": "wide"},
        format="multipart",
    )
    _refused(response, started, 400, 413)
    assert "columns" in response.json()["error"]["message"]


def test_a_million_features_prediction_is_refused(alpha_api):
    body = json.dumps({"inputs": {f"f{i}": 0 for i in range(1_000_000)}}).encode()
    started = time.thread_time()
    response = _post_raw(alpha_api, PREDICT, body)
    _refused(response, started, 413)


def _zip_bomb(unpacked: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", json.dumps({"__class__": "dict"}))
        with archive.open("bomb.npy", "w") as entry:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(unpacked // len(chunk)):
                entry.write(chunk)
    return buffer.getvalue()


def test_zip_bomb_skops_artifact_is_refused(alpha_client):
    bomb = _zip_bomb(512 * 1024 * 1024)  # 512 MB of zeros in about 500 kB
    assert len(bomb) < 1024 * 1024
    started = time.thread_time()
    response = alpha_client.post(
        "/api/v1/models/upload/",
        {
            "file": SimpleUploadedFile("bomb.skops", bomb),
            "model_name": "bomb",
        },
        format="multipart",
    )
    _refused(response, started, 400, 413)


@pytest.mark.parametrize(
    "query",
    [
        "page_size=1000000000",
        "page_size=-1",
        "page_size=0",
        "page_size=abc",
        "page=99999999999",
        "page=-1",
        "page_size=" + "9" * 400,
    ],
)
def test_page_size_abuse_is_capped_or_refused(alpha_client, query):
    started = time.thread_time()
    response = alpha_client.get(f"/api/v1/models/?{query}")
    elapsed = time.thread_time() - started
    assert elapsed < BUDGET
    assert response.status_code in (200, 404), response.content[:300]
    if response.status_code == 200:
        assert len(response.json()["results"]) <= 500
    else:
        assert response.json()["error"]["code"]


# Memory: what serving a hostile request allocates at its peak (tracemalloc, Python
# allocations in this process, the request body the client builds excluded) stays
# within a few times the bytes received, whatever the request claims or unpacks to.
MEMORY_BUDGET = 64 * 1024 * 1024


def _peak_allocated(send) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    import tracemalloc

    tracemalloc.start()
    try:
        response = send()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, response


def test_hostile_requests_are_refused_within_bounded_memory(alpha_api):
    zip_bomb = _zip_bomb(512 * 1024 * 1024)
    wide = ",".join(f"c{i}" for i in range(1_000_000)).encode()
    wide_csv = wide + b"\n" + b",".join([b"1"] * 1_000_000) + b"\n"
    depth = 100_000
    nested = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    empty_rows = b'{"inputs": [' + b",".join([b"{}"] * 300_000) + b"]}"
    features = json.dumps({"inputs": {f"f{i}": 0 for i in range(100_000)}}).encode()
    cases = {
        "zip bomb (512 MB unpacked)": lambda: alpha_api.post(
            "/api/v1/models/upload/",
            {"file": SimpleUploadedFile("bomb.skops", zip_bomb), "model_name": "b"},
            format="multipart",
        ),
        "1,000,000-column CSV": lambda: alpha_api.post(
            "/api/v1/datasets/",
            {"file": SimpleUploadedFile("w.csv", wide_csv, "text/csv"), "name": "w"},
            format="multipart",
        ),
        "JSON nested 100,000 deep": lambda: _post_raw(alpha_api, PREDICT, nested),
        "300,000 empty rows": lambda: _post_raw(alpha_api, PREDICT, empty_rows),
        "100,000 features": lambda: _post_raw(alpha_api, PREDICT, features),
    }
    peaks = {}
    for name, send in cases.items():
        peak, response = _peak_allocated(send)
        assert 400 <= response.status_code < 500, (name, response.status_code)
        peaks[name] = peak
    over = {k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items() if v > MEMORY_BUDGET}
    assert not over, over


@pytest.mark.parametrize(
    "header",
    ["a,b,c", '"a,b",c', '"a""b",c', "a", '"x,""y"",z",w\r', 'a,"",b', ",,"],
)
def test_header_columns_are_counted_as_the_csv_module_reads_them(header):
    import csv

    from apps.jobs.datasets import _header_columns

    data = (header + "\n1,2,3\n").encode()
    assert _header_columns(data) == len(next(csv.reader([header.rstrip("\r")])))


@override_settings(DATASET_MAX_BYTES=1024 * 1024)
def test_an_upload_declared_too_large_is_refused_before_parsing(
    tenant_a, make_user, page_client, alpha_client
):
    body = b"x" * (3 * 1024 * 1024)  # not even multipart: never parsed
    started = time.thread_time()
    response = alpha_client.generic(
        "POST",
        "/api/v1/datasets/",
        body,
        content_type="multipart/form-data; boundary=b",
    )
    _refused(response, started, 413)
    assert response.json()["error"]["fields"]["file"]
    page = page_client(tenant_a, make_user(tenant_a, "editor")).generic(
        "POST", "/jobs/new/", body, content_type="multipart/form-data; boundary=b"
    )
    assert page.status_code == 413
    assert "larger than the limit" in page.content.decode()
