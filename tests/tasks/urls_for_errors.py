"""A throwaway URLconf for endpoint-metrics tests: views that fail in the ways the middleware must count."""

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView


class ProbeExplosion(RuntimeError):
    """An unhandled error of a view; the middleware must count it by this class name."""


def exploding_view(request: HttpRequest, attempt: int) -> HttpResponse:
    raise ProbeExplosion(f"attempt {attempt} blew up")


def unavailable_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("try later", status=503)


def bad_request_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("your fault", status=400)


class ExplodingApiView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request, pk: str):
        raise ProbeExplosion(f"{pk} blew up")


urlpatterns = [
    path("probe/explode/<int:attempt>", exploding_view),
    path("probe/unavailable", unavailable_view),
    path("probe/bad-request", bad_request_view),
    re_path(r"^api/probe/(?P<pk>[^/.]+)/?$", ExplodingApiView.as_view()),
]
