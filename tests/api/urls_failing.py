"""The project's URLs plus one view that fails, to see what a 500 under /api/ answers."""

from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def failing_view(request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/v1/test-failure/", failing_view), *urlpatterns]
