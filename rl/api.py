"""REST API for RL: start, follow, cancel and resume runs; read policy checkpoints, start a human
study of one against its base, and export one as a LoRA file or a merged transformer (POST
exports/, then GET exports/FORMAT/file/ once its "exports" entry says it is downloadable)."""
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from inputs.models import Input
from onereward.jobs import JobStatus
from onereward.permissions import ModelPermissionsWithView
from onereward.runs import TrainingRunViewSet

from .execution import start_human_study
from .exports import download_response, request_export
from .models import PolicyCheckpoint, RLRun
from .round_api import routes as round_routes
from .serializers import ExportRequestSerializer, HumanStudySerializer, PolicyCheckpointSerializer, RLRunSerializer


class RLRunViewSet(TrainingRunViewSet):
    """RL runs. POST starts one on the GPU workers (202); GET one for its step, loss and rewards."""

    queryset = RLRun.objects.select_related("base_generator", "reward_model", "checkpoint").prefetch_related(
        "train_tags", "eval_tags")
    serializer_class = RLRunSerializer


class StudyPermission(ModelPermissionsWithView):
    action_perms = {"human_study": ["evaluation.add_study", "generation.add_generationbatch"],
                    "export": ["rl.view_policycheckpoint", "rl.add_policyexport"],
                    "export_file": ["rl.view_policycheckpoint"]}


class PolicyCheckpointViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = PolicyCheckpoint.objects.select_related("generator").prefetch_related("exports")
    serializer_class = PolicyCheckpointSerializer
    permission_classes = [StudyPermission]

    @extend_schema(request=HumanStudySerializer, responses={202: PolicyCheckpointSerializer})
    @action(detail=True, methods=["post"], url_path="human-study")
    def human_study(self, request, pk=None):
        checkpoint = self.get_object()
        body = HumanStudySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        inputs = Input.objects.filter(tags__in=body.validated_data["tags"]).distinct()
        try:
            start_human_study(checkpoint, inputs=inputs, user=request.user,
                              judgments_per_item=body.validated_data["judgments_per_item"],
                              ranges=body.validated_data["ranges"])
        except ValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from None
        return Response(self.get_serializer(checkpoint).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ExportRequestSerializer, responses={202: PolicyCheckpointSerializer,
                                                               200: PolicyCheckpointSerializer})
    @action(detail=True, methods=["post"], url_path="exports")
    def export(self, request, pk=None):
        """Prepare the policy as a file (a job on a GPU worker): 202 while it is made, 200 when it is
        already downloadable; 400 when the checkpoint cannot be exported so (a full fine-tune as LoRA)."""
        checkpoint = self.get_object()
        body = ExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            export = request_export(checkpoint, body.validated_data["format"], user=request.user)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        ready = status.HTTP_200_OK if export.status == JobStatus.DONE else status.HTTP_202_ACCEPTED
        return Response(self.get_serializer(self.get_object()).data, status=ready)  # fetched again: its exports

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"exports/(?P<kind>lora|merged)/file", url_name="export-file")
    def export_file(self, request, pk=None, kind=None):
        """The prepared file (.safetensors) as an attachment; 404 until it is ready."""
        return download_response(self.get_object(), kind)


routes = [
    ("rl-runs", RLRunViewSet, "rl-run"),
    ("policy-checkpoints", PolicyCheckpointViewSet, "policy-checkpoint"),
    *round_routes,
]
