"""`/groups/<slug>/comparison/` pages."""

from django.urls import path

from apps.groups import analytics_page_views as views

app_name = "analytics"
urlpatterns = [
    path("<slug:slug>/comparison/", views.comparison, name="comparison"),
    path("<slug:slug>/comparison/promote/", views.promote, name="promote"),
]
