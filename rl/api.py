"""REST API for RL: start, follow, cancel and resume runs; read policy checkpoints and start a human
study of one against its base."""
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from inputs.models import Input
from onereward.permissions import ModelPermissionsWithView
from onereward.runs import TrainingRunViewSet

from .execution import start_human_study
from .models import PolicyCheckpoint, RLRun
from .serializers import HumanStudySerializer, PolicyCheckpointSerializer, RLRunSerializer


class RLRunViewSet(TrainingRunViewSet):
    """RL runs. POST starts one on the GPU workers (202); GET one for its step, loss and rewards."""

    queryset = RLRun.objects.select_related("base_generator", "reward_model", "checkpoint").prefetch_related(
        "train_tags", "eval_tags")
    serializer_class = RLRunSerializer


class StudyPermission(ModelPermissionsWithView):
    action_perms = {"human_study": ["evaluation.add_study", "generation.add_generationbatch"]}

class PolicyCheckpointViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = PolicyCheckpoint.objects.select_related("generator")
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


routes = [
    ("rl-runs", RLRunViewSet, "rl-run"),
    ("policy-checkpoints", PolicyCheckpointViewSet, "policy-checkpoint"),
]
