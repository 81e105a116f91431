"""What the admin and the API of every job started from a form share (reward-model and RL runs,
judge ablations, collection rounds): the admin's add page is the start form, the change page
watches the job and never saves; the API starts it with POST (202) and cancels it."""
from django.contrib import admin
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response


class StartedJobAdmin(admin.ModelAdmin):
    """`add_form` on the add page; the change page shows the job (read-only fields) and never saves."""

    add_form = None

    def add_fields(self) -> list[str]:
        return list(self.add_form._meta.fields)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return self.add_fields() if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else super().get_readonly_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        # Jobs are started, watched and cancelled; never edited.
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            obj.enqueue()  # sent on commit, once the admin has also saved the many-to-many fields


class StartedJobViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """POST starts the job on the workers (202); GET one to follow it; POST …/cancel/ stops it."""

    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = status.HTTP_202_ACCEPTED
        return response

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        job.cancel()
        return Response(self.get_serializer(job).data)
