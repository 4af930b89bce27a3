"""Writes that go with a prediction's log row share its transaction and round trip;
nothing waiting is dropped when the block ends without one, or with an error."""

from __future__ import annotations

import pytest

from apps.core import db


@pytest.fixture
def commits(monkeypatch):  # type: ignore[no-untyped-def]
    sent: list[list[str]] = []
    monkeypatch.setattr(
        db, "_commit", lambda writes: sent.append([w.statement for w in writes])
    )
    return sent


def test_a_later_write_travels_with_the_next_commit(commits):
    with db.writes_together():
        db.raw_commit("usage", later=True)
        assert commits == []
        db.raw_commit("log row")
        db.raw_commit("another")
    assert commits == [["usage", "log row"], ["another"]]


def test_what_still_waits_is_committed_when_the_block_ends(commits):
    with db.writes_together():
        db.raw_commit("usage", later=True)
        db.raw_commit("usage again", later=True)
    assert commits == [["usage", "usage again"]]


def test_an_error_in_the_block_still_commits_what_waits_and_is_raised(commits):
    with pytest.raises(ValueError), db.writes_together():
        db.raw_commit("usage", later=True)
        raise ValueError("the provider failed")
    assert commits == [["usage"]]


def test_outside_a_block_later_commits_at_once(commits):
    db.raw_commit("usage", later=True)
    assert commits == [["usage"]]


def test_a_spool_line_may_carry_what_waits_when_all_of_it_can(commits):
    assert db.spooled_later() is None  # outside a block
    with db.writes_together():
        assert db.spooled_later() is None  # nothing waits
        db.raw_commit("usage", later=True, spooled="1,a")
        db.raw_commit("usage again", later=True, spooled="2,b")
        assert db.spooled_later() == ["1,a", "2,b"]
        db.forget_later()  # they went into a line: not committed here
    with db.writes_together():
        db.raw_commit("usage", later=True, spooled="1,a")
        db.raw_commit("not spoolable", later=True)
        assert db.spooled_later() is None
    assert commits == [["usage", "not spoolable"]]


def test_the_door_sends_usage_and_log_row_in_one_commit(
    commits, tenant_a, make_key, api_client, httpserver
):
    from django_tenants.utils import schema_context

    from tests.groups.conftest import llm_group_create, serve_chat

    serve_chat(httpserver, "/v1/chat/completions", "hello")
    with schema_context(tenant_a.schema_name):
        llm_group_create("bot", [(httpserver.url_for("/v1"), "champion", 100)])
    _, key = make_key(tenant_a, scope="predict")
    response = api_client(tenant_a, key=key).post(
        "/openai/v1/chat/completions",
        {"model": "bot", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    statements = [str(s) for batch in commits for s in batch]
    assert len(commits) == 1, statements
    assert "providers_providerusage" in repr(commits[0][0])
    assert "inference_log_g" in repr(commits[0][1])
