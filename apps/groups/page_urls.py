"""`/groups/` pages. The fixed words come first; a group slug is never one of them
(services.RESERVED_SLUGS)."""

from django.urls import path

from apps.groups import views

app_name = "groups"
urlpatterns = [
    path("", views.group_list, name="group-list"),
    path("new/", views.group_create, name="group-create"),
    path("<slug:slug>/", views.group_detail, name="group-detail"),
    path("<slug:slug>/edit/", views.group_edit, name="group-edit"),
    path("<slug:slug>/members/", views.group_members, name="group-members"),
    path("<slug:slug>/status/", views.group_status, name="group-status"),
    path("<slug:slug>/try/", views.group_try, name="group-try"),
]
