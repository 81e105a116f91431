"""REST API for reward models: start, follow, cancel and resume runs; read versions; send doubtful
candidate sets back to annotation."""
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from onereward.permissions import ModelPermissionsWithView
from onereward.runs import TrainingRunViewSet
from onereward.started_jobs import StartedJobViewSet

from .bias_audit import version_audit
from .core.bias_audit import DEFAULT_THRESHOLD
from .models import JudgeAblation, RewardModelRun, RewardModelVersion
from .reannotation import send_back
from .serializers import (
    JudgeAblationSerializer,
    ReannotationRequestSerializer,
    RewardModelRunSerializer,
    RewardModelVersionSerializer,
    SendBackSerializer,
)


class RewardModelRunViewSet(TrainingRunViewSet):
    """Runs. POST starts one on the GPU workers (202); GET one for its step, loss and ETA."""

    queryset = RewardModelRun.objects.select_related("dataset", "version")
    serializer_class = RewardModelRunSerializer


class BiasAuditQuerySerializer(serializers.Serializer):
    threshold = serializers.FloatField(min_value=0, max_value=1, default=DEFAULT_THRESHOLD,
                                       help_text="flag disparities larger than this share")


class SendBackPermission(ModelPermissionsWithView):
    action_perms = {"send_back": ["rewardmodel.add_reannotationrequest"]}

class RewardModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = RewardModelVersion.objects.select_related("run")
    serializer_class = RewardModelVersionSerializer
    permission_classes = [SendBackPermission]

    @extend_schema(request=SendBackSerializer, responses={201: ReannotationRequestSerializer})
    @action(detail=True, methods=["post"], url_path="send-back")
    def send_back(self, request, pk=None):
        version = self.get_object()
        body = SendBackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sent = send_back(version, user=request.user, **body.validated_data)
        except ValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from None
        return Response(ReannotationRequestSerializer(sent).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[BiasAuditQuerySerializer], responses={200: dict})
    @action(detail=True, methods=["get"], url_path="bias-audit")
    def bias_audit(self, request, pk=None):
        """The judge's agreement with people per task and input tag, and people's and the judge's
        preference for the higher value of each generation setting, on the test split."""
        version = self.get_object()
        query = BiasAuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            return Response(version_audit(version, query.validated_data["threshold"]))
        except ValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from None


class AblationPermission(ModelPermissionsWithView):
    action_perms = {"cancel": ["rewardmodel.add_judgeablation"]}


class JudgeAblationViewSet(StartedJobViewSet):
    """Judge ablations. POST starts one on the GPU workers (202); GET one for its progress and, once
    done, its side-by-side results; POST …/cancel/ stops it."""

    queryset = JudgeAblation.objects.select_related("dataset").prefetch_related("versions")
    serializer_class = JudgeAblationSerializer
    permission_classes = [AblationPermission]


routes = [
    ("reward-model-runs", RewardModelRunViewSet, "reward-model-run"),
    ("reward-models", RewardModelVersionViewSet, "reward-model"),
    ("judge-ablations", JudgeAblationViewSet, "judge-ablation"),
]
