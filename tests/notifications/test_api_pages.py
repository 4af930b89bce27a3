"""The inbox and webhook settings over the API and pages: roles, write-only
secrets, SSRF at save time, tenant isolation and the bell."""

from __future__ import annotations

from typing import Any

from django.test import RequestFactory
from django_tenants.utils import schema_context

from apps.notifications.context_processors import bell
from apps.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from apps.notifications.services import notify, webhook_endpoint_create

HOOK = "http://127.0.0.1:9/hook"


def _notify(tenant: Any, user: Any, n: int, read: int = 0) -> list[Notification]:
    from django.utils import timezone

    with schema_context(tenant.schema_name):
        made = [
            notify(event="job.succeeded", user=user, title=f"n{i}", payload={})
            for i in range(n)
        ]
        for item in made[:read]:
            Notification.objects.filter(pk=item.pk).update(read_at=timezone.now())
        return made


def test_webhook_api_secret_is_shown_once_and_never_again(
    tenant_a, make_user, api_client
):
    admin = make_user(tenant_a, "admin")
    client = api_client(tenant_a, user=admin)
    created = client.post(
        "/api/v1/webhooks/",
        {"url": HOOK, "events": ["job.succeeded", "group.promoted"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert "secret" not in body
    assert body["events"] == ["group.promoted", "job.succeeded"]
    pk = body["id"]
    with schema_context("alpha"):
        assert WebhookEndpoint.objects.get(pk=pk).secret == secret
        WebhookDelivery.objects.create(endpoint_id=pk, event="job.succeeded")
    responses = [
        client.get("/api/v1/webhooks/"),
        client.get(f"/api/v1/webhooks/{pk}/"),
        client.get(f"/api/v1/webhooks/{pk}/deliveries/"),
        client.patch(f"/api/v1/webhooks/{pk}/", {"enabled": False}, format="json"),
        client.get("/api/schema/"),
    ]
    for response in responses:
        assert response.status_code == 200, response.content
        assert secret not in response.content.decode()
    assert responses[3].json()["enabled"] is False
    assert responses[2].json()["count"] == 1

    given = "my-own-secret-0123456789"
    own = client.post(
        "/api/v1/webhooks/",
        {"url": HOOK, "events": ["job.failed"], "secret": given},
        format="json",
    )
    assert own.status_code == 201
    assert given not in own.content.decode()
    assert "signing_secret" not in own.json()
    with schema_context("alpha"):
        raw = WebhookEndpoint.objects.filter(pk=own.json()["id"]).values_list(
            "secret", flat=True
        )
        # stored encrypted: the ORM decrypts, the column does not hold the plaintext
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT secret FROM notifications_webhookendpoint WHERE id = %s",
                [own.json()["id"]],
            )
            assert given not in cursor.fetchone()[0]
        assert list(raw) == [given]
    assert client.delete(f"/api/v1/webhooks/{pk}/").status_code == 204


def test_webhook_url_pointing_inside_is_refused_at_save(
    tenant_a, make_user, api_client, page_client
):
    admin = make_user(tenant_a, "admin")
    client = api_client(tenant_a, user=admin)
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest", "ftp://x"):
        response = client.post(
            "/api/v1/webhooks/", {"url": url, "events": ["job.failed"]}, format="json"
        )
        assert response.status_code == 400, response.content
        assert "url" in response.json()["error"]["fields"]
    bad_event = client.post(
        "/api/v1/webhooks/", {"url": HOOK, "events": ["job.exploded"]}, format="json"
    )
    assert bad_event.status_code == 400
    assert list(bad_event.json()["error"]["fields"]) == ["events.0"]
    with schema_context("alpha"):
        endpoint, _ = webhook_endpoint_create(
            url=HOOK, events=["job.failed"], actor="t"
        )
    patched = client.patch(
        f"/api/v1/webhooks/{endpoint.pk}/", {"url": "http://10.1.2.3/"}, format="json"
    )
    assert patched.status_code == 400
    assert "url" in patched.json()["error"]["fields"]

    page = page_client(tenant_a, admin).post(
        "/settings/webhooks/", {"url": "http://10.0.0.1/x", "events": ["job.failed"]}
    )
    assert page.status_code == 400
    assert "10.0.0.1 is not a public address" in page.content.decode()
    with schema_context("alpha"):
        assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == [HOOK]


def test_webhook_page_creates_shows_secret_once_disables_and_deletes(
    tenant_a, make_user, page_client
):
    admin = make_user(tenant_a, "admin")
    client = page_client(tenant_a, admin)
    created = client.post(
        "/settings/webhooks/", {"url": HOOK, "events": ["job.failed"]}
    )
    assert created.status_code == 200
    with schema_context("alpha"):
        endpoint = WebhookEndpoint.objects.get()
        secret = endpoint.secret
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            event="job.failed",
            status="failed",
            error_code="unsafe_url",
            attempts=1,
        )
    assert secret in created.content.decode()
    listing = client.get("/settings/webhooks/")
    html = listing.content.decode()
    assert secret not in html
    assert HOOK in html and "unsafe_url" in html
    assert client.post(f"/settings/webhooks/{endpoint.pk}/toggle/").status_code == 302
    with schema_context("alpha"):
        assert WebhookEndpoint.objects.get().enabled is False
    assert client.post(f"/settings/webhooks/{endpoint.pk}/delete/").status_code == 302
    with schema_context("alpha"):
        assert not WebhookEndpoint.objects.exists()


def test_only_admins_manage_webhooks(
    tenant_a, make_user, make_key, api_client, page_client
):
    editor = make_user(tenant_a, "editor")
    _, predict_key = make_key(tenant_a, scope="predict")
    _, manage_key = make_key(tenant_a, scope="manage")
    for client in (
        api_client(tenant_a, user=editor),
        api_client(tenant_a, key=predict_key),
    ):
        assert client.get("/api/v1/webhooks/").status_code == 403
        assert (
            client.post(
                "/api/v1/webhooks/",
                {"url": HOOK, "events": ["job.failed"]},
                format="json",
            ).status_code
            == 403
        )
    assert (
        api_client(tenant_a, key=manage_key).get("/api/v1/webhooks/").status_code == 200
    )
    pages = page_client(tenant_a, editor)
    assert pages.get("/settings/webhooks/").status_code == 403
    assert pages.post("/settings/webhooks/", {"url": HOOK}).status_code == 403
    assert page_client(tenant_a).get("/settings/webhooks/").status_code == 302
    with schema_context("alpha"):
        assert not WebhookEndpoint.objects.exists()


def test_each_user_sees_and_marks_only_their_notifications(
    tenant_a, make_user, make_key, api_client, page_client
):
    viewer = make_user(tenant_a, "viewer")
    other = make_user(tenant_a, "editor")
    mine = _notify(tenant_a, viewer, 3, read=1)
    theirs = _notify(tenant_a, other, 1)
    client = api_client(tenant_a, user=viewer)
    listing = client.get("/api/v1/notifications/").json()
    assert listing["count"] == 3
    assert [n["title"] for n in listing["results"]] == ["n2", "n1", "n0"]
    unread = client.get("/api/v1/notifications/?unread=true").json()
    assert [n["id"] for n in unread["results"]] == [mine[2].pk, mine[1].pk]
    assert client.post(f"/api/v1/notifications/{theirs[0].pk}/read/").status_code == 404
    marked = client.post(f"/api/v1/notifications/{mine[1].pk}/read/")
    assert marked.status_code == 200 and marked.json()["read"] is True
    assert client.post("/api/v1/notifications/read-all/").json() == {"marked": 1}
    with schema_context("alpha"):
        assert (
            Notification.objects.filter(user=other, read_at__isnull=True).count() == 1
        )
    _, key = make_key(tenant_a)
    assert (
        api_client(tenant_a, key=key).get("/api/v1/notifications/").status_code == 403
    )

    page = page_client(tenant_a, other)
    html = page.get("/notifications/").content.decode()
    assert "n0" in html and "Mark all read" in html
    assert page.post("/notifications/read-all/").status_code == 302
    assert "Mark all read" not in page.get("/notifications/").content.decode()
    assert page_client(tenant_a).get("/notifications/").status_code == 302


def test_tenants_never_see_each_others_notifications_or_webhooks(
    tenant_a, tenant_b, make_user, api_client, django_capture_on_commit_callbacks
):
    admin_a = make_user(tenant_a, "admin")
    admin_b = make_user(tenant_b, "admin")
    notes = _notify(tenant_a, admin_a, 1)
    with schema_context("alpha"):
        endpoint, _ = webhook_endpoint_create(
            url=HOOK, events=["job.failed"], actor="t"
        )
    beta = api_client(tenant_b, user=admin_b)
    assert beta.get("/api/v1/webhooks/").json()["count"] == 0
    assert beta.get(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404
    assert beta.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404
    assert beta.get("/api/v1/notifications/").json()["count"] == 0
    assert beta.post(f"/api/v1/notifications/{notes[0].pk}/read/").status_code == 404
    # a beta event reaches beta's endpoints only
    with schema_context("beta"), django_capture_on_commit_callbacks(execute=False):
        notify(event="job.failed", user=admin_b, title="b", payload={})
        assert Notification.objects.filter(title="b").count() == 1
    with schema_context("alpha"):
        assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
        assert not WebhookDelivery.objects.exists()
        assert not Notification.objects.filter(title="b").exists()
        assert Notification.objects.get(pk=notes[0].pk).read_at is None
    # a user of alpha is not signed in on beta's host
    assert api_client(tenant_b, user=None).get(
        "/api/v1/notifications/"
    ).status_code in (
        401,
        403,
    )


def test_bell_shows_the_unread_count_with_one_query(tenant_a, make_user, page_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = make_user(tenant_a, "viewer")
    _notify(tenant_a, user, 3, read=1)
    html = page_client(tenant_a, user).get("/notifications/").content.decode()
    assert 'id="unread-count">2</span>' in html
    assert "Notifications, 2 unread" in html

    request = RequestFactory().get("/")
    request.tenant = tenant_a
    request.user = user
    with schema_context("alpha"), CaptureQueriesContext(connection) as queries:
        assert bell(request) == {"unread_notifications": 2}
    # django-tenants may add a `SET search_path`; the bell itself is one COUNT
    sql = [q["sql"] for q in queries.captured_queries if "search_path" not in q["sql"]]
    assert len(sql) == 1 and "COUNT(" in sql[0]
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    with CaptureQueriesContext(connection) as queries:
        assert bell(request) == {}
    assert len(queries.captured_queries) == 0
