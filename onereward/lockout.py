"""The login lockout's platform side (django-axes does the counting, see settings.py): the client's
address, the answer a locked client gets (a page, or JSON under /api/), and the API token view
under the same lockout.

An admin unlocks a client by deleting its row in the admin (Axes › Access attempts) or with
`python manage.py axes_reset_username USERNAME` (`axes_reset` unlocks everybody)."""
from datetime import timedelta

from axes.helpers import get_client_ip_address, get_cool_off
from axes.utils import reset
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from .api_errors import is_api_request


def client_ip(request) -> str | None:
    """The address a lockout is counted against: REMOTE_ADDR, or behind ONEREWARD_TRUSTED_PROXY_COUNT
    proxies the address the outermost of them saw (the entries before it are the client's own words)."""
    hops = settings.ONEREWARD_TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


def _spoken(delta: timedelta) -> str:
    seconds = max(1, round(delta.total_seconds()))
    if seconds % 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def lockout_message(cool_off: timedelta | None) -> str:
    limit = settings.AXES_FAILURE_LIMIT
    refused = f"Too many failed logins ({limit}) for this username from your address."
    if cool_off is None:
        return f"{refused} It stays locked until a platform admin unlocks it."
    # Each refused attempt during the lockout counts as a failure and starts the wait again.
    return (f"{refused} Try again in {_spoken(cool_off)} (every attempt before then starts the wait again), "
            "or ask a platform admin to unlock it.")


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: 429 with the time to wait, as JSON under /api/ and as a page elsewhere."""
    cool_off = get_cool_off(request)
    message = lockout_message(cool_off)
    wait = round(cool_off.total_seconds()) if cool_off else None
    if is_api_request(request):
        response = JsonResponse({"detail": message, "retry_after_seconds": wait}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response


class LockedObtainAuthToken(ObtainAuthToken):
    """A token for scripts, from a username and password (then `Authorization: Token KEY`). After
    repeated wrong passwords the username is locked from that address: 429, with the time to wait
    in `retry_after_seconds` and `Retry-After`."""

    # DRF's serializer calls authenticate() with the request, so Axes counts the failures and marks
    # the request when the client is locked; this view answers that with the lockout (not "unable to
    # log in") and, as a login does, clears the client's failures on success.
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        valid = serializer.is_valid()
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request)
        if not valid:
            raise ValidationError(serializer.errors)
        if settings.AXES_ENABLED and settings.AXES_RESET_ON_SUCCESS:
            reset(ip=get_client_ip_address(request), username=serializer.validated_data["username"])
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


obtain_auth_token = LockedObtainAuthToken.as_view()
