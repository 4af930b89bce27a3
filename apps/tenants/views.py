from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def landing(request: HttpRequest) -> HttpResponse:
    """The public host: what ModelHub is and where the platform admin lives.
    Tenants are never listed here: their names are their own business."""
    return render(request, "tenants/landing.html")
