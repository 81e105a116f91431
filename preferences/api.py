"""REST API for preference dataset versions: list, build (POST, 202), follow, download, delete."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from onereward.files import stored_file_response

from .admin import CONTENT_TYPES
from .export import delete_files, stored_files
from .feedback import FeedbackRejected, import_file, import_rows
from .feedback_imports import needs_background, start_import
from .models import FeedbackEvent, FeedbackImport, PreferenceDataset
from .serializers import (
    FeedbackEventSerializer,
    FeedbackImportJobSerializer,
    FeedbackImportSerializer,
    PreferenceDatasetCreateSerializer,
    PreferenceDatasetSerializer,
)


class PreferenceDatasetViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Dataset versions. POST queues the build of a new version of `name` (202); GET one for its
    progress, counts and file URLs; DELETE removes it and its files. Versions are never edited."""

    queryset = PreferenceDataset.objects.select_related("created_by").prefetch_related(
        "batches", "tasks", "dimensions", "annotators")

    def get_queryset(self):
        queryset = super().get_queryset()
        name = self.request.query_params.get("name")
        return queryset.filter(name=name) if name else queryset

    def get_serializer_class(self):
        return PreferenceDatasetCreateSerializer if self.action == "create" else PreferenceDatasetSerializer

    @extend_schema(request=PreferenceDatasetCreateSerializer, responses={202: PreferenceDatasetSerializer})
    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = status.HTTP_202_ACCEPTED
        return response

    def perform_destroy(self, instance):
        delete_files(instance)
        instance.delete()

    @extend_schema(request=None, responses=PreferenceDatasetSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        dataset = self.get_object()
        dataset.cancel()
        return Response(PreferenceDatasetSerializer(dataset, context={"request": request}).data)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The file's bytes.")})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[\w./-]+)", url_name="download")
    def download(self, request, pk=None, name=None):
        dataset = self.get_object()
        if name not in stored_files(dataset):
            raise Http404("no such file in this dataset")
        suffix = name[name.rfind("."):]
        response = stored_file_response(f"{dataset.storage_prefix}/{name}",
                                        CONTENT_TYPES.get(suffix, "application/octet-stream"))
        response["Content-Disposition"] = (
            f'attachment; filename="{dataset.name}-v{dataset.version}-{name.replace("/", "-")}"'
        )
        return response


class FeedbackEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Production feedback events. POST imports a list of events (JSON) or a JSONL/CSV file (one over
    1 MiB on a worker: 202 with the import to follow at feedback-imports/ID/): every
    row is checked first and all are stored or none (400 naming the bad rows); an event already
    stored (same source and external id) is left alone."""

    queryset = FeedbackEvent.objects.select_related("candidate")
    serializer_class = FeedbackEventSerializer

    def get_serializer_class(self):
        return FeedbackImportSerializer if self.action == "create" else FeedbackEventSerializer

    @extend_schema(request=FeedbackImportSerializer, responses={201: dict, 202: FeedbackImportJobSerializer})
    def create(self, request, *args, **kwargs):
        body = FeedbackImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        source = body.validated_data["source"]
        try:
            if "file" in body.validated_data and needs_background(body.validated_data["file"]):
                job = start_import(body.validated_data["file"], user=request.user, source=source)
                return Response(FeedbackImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
            if "file" in body.validated_data:
                upload = body.validated_data["file"]
                done = import_file(upload.read(), upload.name, user=request.user, default_source=source)
            else:
                rows = list(enumerate(body.validated_data["events"], start=1))
                done = import_rows(rows, user=request.user, default_source=source)
        except FeedbackRejected as rejected:
            return Response({"detail": "nothing was imported", "problems": [p.as_dict() for p in rejected.problems]},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response({"created": done.created, "already_stored": done.already_stored},
                        status=status.HTTP_201_CREATED)


class FeedbackImportViewSet(viewsets.ReadOnlyModelViewSet):
    """Large feedback files (over 1 MiB) posted to feedback-events/ are imported on a worker (202 with
    the import); GET one to follow its phase and progress, then its counts or its bad rows."""

    queryset = FeedbackImport.objects.all()
    serializer_class = FeedbackImportJobSerializer


routes = [("preference-datasets", PreferenceDatasetViewSet, "preference-dataset"),
          ("feedback-events", FeedbackEventViewSet, "feedback-event"),
          ("feedback-imports", FeedbackImportViewSet, "feedback-import")]
