"""REST API for the taxonomy, inputs and input imports (token or session auth)."""
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from .models import Dimension, Input, InputImport, Tag, Task, TaskDimension
from .serializers import (
    DimensionSerializer,
    InputCreateSerializer,
    InputImportCreateSerializer,
    InputImportSerializer,
    InputSerializer,
    TagSerializer,
    TaskSerializer,
)


class TaskViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Task.objects.prefetch_related(
        Prefetch("task_dimensions", queryset=TaskDimension.objects.select_related("dimension"))
    )
    serializer_class = TaskSerializer
    lookup_field = "slug"


class DimensionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Dimension.objects.all()
    serializer_class = DimensionSerializer
    lookup_field = "slug"


class InputViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Inputs. Create takes multipart: task, source, mask (or canvas for extend), prompt, tags, metadata.
    Filters: ?task=SLUG, ?tag=NAME."""

    serializer_class = InputSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        queryset = Input.objects.select_related("task").prefetch_related("tags")
        task = self.request.query_params.get("task")
        tag = self.request.query_params.get("tag")
        if task:
            queryset = queryset.filter(task__slug=task)
        if tag:
            queryset = queryset.filter(tags__name=tag)
        return queryset

    def get_serializer_class(self):
        return InputCreateSerializer if self.action == "create" else InputSerializer

    @extend_schema(request=InputCreateSerializer, responses={201: InputSerializer})
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)


class InputImportViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Zip imports run by a worker: POST an archive (202 Accepted), then GET the record for its
    status, progress, imported inputs or every bad entry."""

    queryset = InputImport.objects.prefetch_related("created_inputs")
    parser_classes = [MultiPartParser, FormParser]

    def get_serializer_class(self):
        return InputImportCreateSerializer if self.action == "create" else InputImportSerializer

    @extend_schema(request=InputImportCreateSerializer, responses={202: InputImportSerializer})
    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = status.HTTP_202_ACCEPTED
        return response


class TagViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Tag.objects.all()
    serializer_class = TagSerializer


# Registered on the platform's API router (onereward/urls.py), in this order.
routes = [
    ("tasks", TaskViewSet, "task"),
    ("dimensions", DimensionViewSet, "dimension"),
    ("tags", TagViewSet, "tag"),
    ("inputs", InputViewSet, "input"),
    ("input-imports", InputImportViewSet, "input-import"),
]
