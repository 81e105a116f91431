"""Errors under /api/ answer JSON, `{"detail": "..."}` as DRF's own do, whatever raised them: a body
over the upload limits (413), a URL no endpoint serves (404), a server error (500, no traceback),
a refused CSRF check or permission (403), a bad request (400), a method a view does not take (405).
Pages keep Django's HTML answers.

DRF answers its own exceptions (validation, authentication, permissions, 404 of an object, 405,
CSRF under session auth) in JSON already; this module covers what happens outside its views or
escapes them. The handlers are the project's handler400/403/404/500 (onereward/urls.py), which
Django calls with DEBUG off; with DEBUG on, unknown URLs and server errors show its debug page."""
import logging

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponseNotAllowed, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure

API_PREFIX = "/api/"

logger = logging.getLogger(__name__)


def is_api_request(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def json_error(status: int, detail: str, **extra) -> JsonResponse:
    return JsonResponse({"detail": detail, **extra}, status=status)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _body_too_big(sent: int | None = None) -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    what = f"The request body is {_mib(sent)}" if sent is not None else "A form field of the request is too large"
    return json_error(
        413,
        f"{what}: the API accepts at most {_mib(limit)} ({limit} bytes, DATA_UPLOAD_MAX_MEMORY_SIZE) of data "
        "outside uploaded files. Send large content as a file in a multipart upload.",
        setting="DATA_UPLOAD_MAX_MEMORY_SIZE", limit=limit,
    )


def upload_limit_error(exception) -> JsonResponse | None:
    """413 naming the limit (the setting and its value) for Django's refusals of a too-large request
    body; None for other exceptions."""
    if isinstance(exception, RequestDataTooBig):
        return _body_too_big()
    if isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return json_error(413, f"The request has more than {limit} fields (DATA_UPLOAD_MAX_NUMBER_FIELDS).",
                          setting="DATA_UPLOAD_MAX_NUMBER_FIELDS", limit=limit)
    if isinstance(exception, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return json_error(413, f"The request has more than {limit} files (DATA_UPLOAD_MAX_NUMBER_FILES).",
                          setting="DATA_UPLOAD_MAX_NUMBER_FILES", limit=limit)
    return None


def _declared_length(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class ApiErrorMiddleware:
    """Refuses an API body over DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads it, answers
    Django's upload-limit exceptions raised in an API view with a 413 in JSON, and Django's own 405
    (a view outside DRF) in JSON.

    DRF parses JSON and form bodies from the raw stream, past the check Django makes when
    `request.body` is read, so the declared length is checked here. Multipart bodies are let through:
    their files stream to disk whatever their size and Django's parser limits the other fields."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_request(request) and settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
            length = _declared_length(request)
            multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/")
            if length and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not multipart:
                return _body_too_big(length)
        response = self.get_response(request)
        if is_api_request(request) and isinstance(response, HttpResponseNotAllowed):
            # Django's own 405 (require_POST, View) has an empty HTML body; DRF's is JSON already.
            allowed = response["Allow"]
            response = json_error(405, f"Method {request.method} is not allowed here; use {allowed}.")
            response["Allow"] = allowed
        return response

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None
        response = upload_limit_error(exception)
        if response is not None:
            logger.warning("Refused an API request over the upload limits: %s %s (%s)", request.method,
                           request.path, exception)
        return response


def bad_request(request, exception, template_name="400.html"):
    if is_api_request(request):
        too_big = upload_limit_error(exception)
        if too_big is not None:
            return too_big
        # A body that does not parse, or a view's BadRequest, is the client's to fix; other suspicious
        # requests (a forged Host header...) are refused without saying what was noticed, as Django does.
        if isinstance(exception, (MultiPartParserError, BadRequest)) and str(exception):
            return json_error(400, f"Bad request: {exception}")
        return json_error(400, "Bad request.")
    return defaults.bad_request(request, exception, template_name)


def permission_denied(request, exception, template_name="403.html"):
    if is_api_request(request):
        return json_error(403, str(exception) or "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception, template_name)


def page_not_found(request, exception, template_name="404.html"):
    if is_api_request(request):
        return json_error(404, f"No API endpoint at {request.path}; GET {API_PREFIX} lists the endpoints.")
    return defaults.page_not_found(request, exception, template_name)


def server_error(request, template_name="500.html"):
    # Django has logged the exception with its traceback; the client gets no detail of it.
    if is_api_request(request):
        return json_error(500, "Internal server error. It has been logged on the server; try again later or "
                               "report the time of the request to an admin.")
    return defaults.server_error(request, template_name)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW. DRF views run their own check (session auth only) and answer it in JSON;
    this covers any other view under /api/."""
    if is_api_request(request):
        return json_error(403, f"CSRF check failed: {reason}. Send the X-CSRFToken header, or use token "
                               "authentication for scripts.")
    return django_csrf_failure(request, reason)
