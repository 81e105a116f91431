"""REST API: generators, and batches (launch, follow, cancel, resume, their candidates)."""
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from onereward.permissions import ModelPermissionsWithView

from .models import Candidate, CandidateSet, GenerationBatch, Generator
from .serializers import (
    GenerationBatchDetailSerializer,
    GenerationBatchLaunchSerializer,
    GenerationBatchSerializer,
    GeneratorSerializer,
)


class GeneratorViewSet(viewsets.ModelViewSet):
    queryset = Generator.objects.all()
    serializer_class = GeneratorSerializer


class LaunchPermission(ModelPermissionsWithView):
    """Cancel and resume need the right to launch (add) batches."""

    action_perms = {"cancel": ["generation.add_generationbatch"], "resume": ["generation.add_generationbatch"]}

class GenerationBatchViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Batches. POST launches one (202); GET one for its progress and candidate sets."""

    permission_classes = [LaunchPermission]

    def get_queryset(self):
        queryset = GenerationBatch.objects.select_related("generator")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("candidate_sets", queryset=CandidateSet.objects.order_by("input_id").prefetch_related(
                    Prefetch("candidates", queryset=Candidate.objects.order_by("index"))))
            )
        return queryset

    def get_serializer_class(self):
        if self.action == "create":
            return GenerationBatchLaunchSerializer
        return GenerationBatchDetailSerializer if self.action == "retrieve" else GenerationBatchSerializer

    @extend_schema(request=GenerationBatchLaunchSerializer, responses={202: GenerationBatchSerializer})
    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = status.HTTP_202_ACCEPTED
        return response

    @extend_schema(request=None, responses=GenerationBatchSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        batch = self.get_object()
        batch.cancel()
        return Response(GenerationBatchSerializer(batch, context={"request": request}).data)

    @extend_schema(request=None, responses=GenerationBatchSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        batch = self.get_object()
        batch.resume()
        return Response(GenerationBatchSerializer(batch, context={"request": request}).data)


routes = [
    ("generators", GeneratorViewSet, "generator"),
    ("generation-batches", GenerationBatchViewSet, "generation-batch"),
]
