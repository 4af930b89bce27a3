"""Pages; include at the root: `path("", include("apps.notifications.urls"))`."""

from django.urls import path

from apps.notifications import views

app_name = "notifications"

urlpatterns = [
    path("notifications/", views.notification_list, name="notification-list"),
    path(
        "notifications/<int:pk>/read/",
        views.notification_read,
        name="notification-read",
    ),
    path(
        "notifications/read-all/",
        views.notification_read_all,
        name="notification-read-all",
    ),
    path("settings/webhooks/", views.webhook_list, name="webhook-list"),
    path(
        "settings/webhooks/<int:pk>/toggle/",
        views.webhook_toggle,
        name="webhook-toggle",
    ),
    path(
        "settings/webhooks/<int:pk>/delete/",
        views.webhook_delete,
        name="webhook-delete",
    ),
]
