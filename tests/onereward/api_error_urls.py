"""The project's URLs and error handlers, plus views that fail in the ways the API's error answers
must cover: an uncaught exception, a refused permission, a bad request, a CSRF-protected form."""
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from onereward.urls import handler400, handler403, handler404, handler500  # noqa: F401 (Django reads them here)
from onereward.urls import urlpatterns as project_urlpatterns


class Explosion(RuntimeError):
    pass


def explode(request):
    raise Explosion("secret internals: the database password is hunter2")


def forbidden(request):
    raise PermissionDenied("Only the owner may do this.")


def bad(request):
    raise BadRequest("the 'when' parameter is not a date")


@require_POST
def plain_form(request):
    return HttpResponse(f"fields: {len(request.POST)}")


urlpatterns = [
    path("api/test-errors/explode/", explode),
    path("api/test-errors/forbidden/", forbidden),
    path("api/test-errors/bad/", bad),
    path("api/test-errors/form/", plain_form),
    path("test-errors/explode/", explode),
    path("test-errors/form/", plain_form),
    *project_urlpatterns,
]
