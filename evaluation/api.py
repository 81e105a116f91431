"""REST API for human evaluation studies: list, retrieve, create (the rules of
evaluation.studies.check_study), and the report as JSON."""
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from generation.models import GenerationBatch
from onereward.bounds import SMALLINT_MAX

from .leaderboard_api import LeaderboardView
from .models import Study, StudyArm
from .studies import check_study, save_study, study_report


class StudyArmSerializer(serializers.ModelSerializer):
    generator = serializers.CharField(source="batch.generator.name", read_only=True)

    class Meta:
        model = StudyArm
        fields = ["label", "batch", "generator", "order"]
        read_only_fields = fields


class StudySerializer(serializers.ModelSerializer):
    arms = StudyArmSerializer(many=True, read_only=True)
    items = serializers.IntegerField(source="item_total", read_only=True)
    judgments = serializers.IntegerField(source="judgment_total", read_only=True)

    class Meta:
        model = Study
        fields = ["id", "name", "description", "judgments_per_item", "active", "arms", "items", "judgments",
                  "created_at"]
        read_only_fields = fields


class StudyArmInputSerializer(serializers.Serializer):
    batch = serializers.PrimaryKeyRelatedField(queryset=GenerationBatch.objects.select_related("generator"))
    label = serializers.CharField(max_length=StudyArm._meta.get_field("label").max_length)


class StudyCreateSerializer(serializers.Serializer):
    """Create: a name, two or more arms ({batch: id, label}) over the same inputs, judgments per item."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    judgments_per_item = serializers.IntegerField(default=3, min_value=1, max_value=SMALLINT_MAX)
    arms = StudyArmInputSerializer(many=True)

    def validate(self, attrs):
        # The study's own rules (evaluation.studies.check_study), so that a bad study is refused at
        # validation like any other field error and create() only saves.
        try:
            attrs["plan"] = check_study(
                attrs["name"], [(arm["batch"], arm["label"]) for arm in attrs["arms"]], attrs["judgments_per_item"]
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(serializers.as_serializer_error(error)) from None
        return attrs

    def create(self, validated_data):
        try:
            return save_study(validated_data["plan"], user=self.context["request"].user,
                              description=validated_data["description"])
        except DjangoValidationError as error:
            # A study of the same name saved between validation and now.
            raise serializers.ValidationError(serializers.as_serializer_error(error)) from None

    def to_representation(self, instance):
        return StudySerializer(_with_counts(Study.objects.filter(pk=instance.pk)).get(), context=self.context).data


def _with_counts(queryset):
    return (queryset.annotate(item_total=Count("items", distinct=True),
                              judgment_total=Count("items__judgments", distinct=True))
            .prefetch_related("arms__batch__generator"))


class StudyViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Studies. POST creates one from two or more batches (201); GET .../report/ gives usability per
    arm x task and Good/Same/Bad per ordered arm pair x task x dimension, with Wilson intervals."""

    def get_queryset(self):
        return _with_counts(Study.objects.all())

    def get_serializer_class(self):
        return StudyCreateSerializer if self.action == "create" else StudySerializer

    @extend_schema(request=StudyCreateSerializer, responses={201: StudySerializer})
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        return Response(study_report(self.get_object()), status=status.HTTP_200_OK)


routes = [("studies", StudyViewSet, "study")]
# Outside the router: one view over every study.
urlpatterns = [path("leaderboard/", LeaderboardView.as_view(), name="api-leaderboard")]
