"""REST API for collection rounds (rl/rounds.py): start one (POST /api/collection-rounds/, 202), follow
it (its stage, batches, the sets in the strategy's order, the tasks opened), cancel it; read and
edit the schedules, and start a schedule's round now (POST /api/collection-schedules/ID/start/)."""
import copy

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from generation.models import Generator
from inputs.models import Tag, Task
from onereward.bounds import SEED_RANGE
from onereward.permissions import ModelPermissionsWithView
from onereward.started_jobs import StartedJobViewSet
from rewardmodel.models import RewardModelVersion

from .rounds import (
    OPTION_FIELDS,
    SCHEDULE_FIELDS,
    TIMING_FIELDS,
    CollectionRound,
    CollectionSchedule,
    CollectionSet,
    annotation_progress,
    launch_round,
    new_round,
    plan_round,
    stage_fraction,
    stage_line,
    start_from_schedule,
)

ROUND_STATE = ["status", "stage", "where", "progress", "progress_done", "progress_total", "error", "results",
               "batches", "checkpoint", "schedule", "annotation", "sets", "created_at", "started_at", "finished_at"]


class OptionFields(serializers.ModelSerializer):
    """The round options, with relations by name where a name is what people type."""

    generator = serializers.SlugRelatedField(slug_field="name", queryset=Generator.objects.all(), required=False,
                                             allow_null=True)
    reward_model = serializers.SlugRelatedField(slug_field="name", queryset=RewardModelVersion.objects.all(),
                                                required=False, allow_null=True)
    tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all(), required=False)
    task = serializers.SlugRelatedField(slug_field="slug", queryset=Task.objects.all(), required=False,
                                        allow_null=True)
    seed = serializers.IntegerField(required=False, default=0, **SEED_RANGE)


class CollectionSetSerializer(serializers.ModelSerializer):
    input = serializers.IntegerField(source="candidate_set.input_id", read_only=True)
    generator = serializers.CharField(source="candidate_set.batch.generator.name", read_only=True)

    class Meta:
        model = CollectionSet
        fields = ["candidate_set", "input", "generator", "rank", "figure", "task", "pair_scores"]


class CollectionRoundSerializer(OptionFields):
    """POST starts a round with these options (all optional: random order, the latest policy
    checkpoint, every input); the rules are rl.rounds.plan_round's, a 400 by field."""

    where = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField(help_text=(
        "The share of the current stage done, in [0, 1]: candidate sets generated, then sets scored (see stage)."))
    annotation = serializers.SerializerMethodField(help_text="Tasks opened and judgments made over them.")
    sets = serializers.SerializerMethodField(help_text="The round's sets in the strategy's order.")

    class Meta:
        model = CollectionRound
        fields = ["id", "name", *OPTION_FIELDS, *ROUND_STATE]
        read_only_fields = [name for name in ROUND_STATE if name not in ("where", "progress", "annotation", "sets")]

    def get_where(self, round_) -> str:
        return stage_line(round_)

    def get_progress(self, round_) -> float:
        return stage_fraction(round_)

    def get_annotation(self, round_) -> dict:
        return annotation_progress(round_)

    def get_sets(self, round_) -> list[dict]:
        rows = round_.sets.select_related("candidate_set__batch__generator").order_by("rank", "pk")
        return CollectionSetSerializer(rows, many=True).data

    def validate(self, attrs):
        options = {name: attrs[name] for name in OPTION_FIELDS if name in attrs}
        self.round, self.round_tags = new_round(name=attrs.get("name", ""), **options)
        self.plan = plan_round(self.round, self.round_tags)
        return attrs

    def create(self, validated_data):
        request = self.context.get("request")
        self.round.created_by = request.user if request and request.user.is_authenticated else None
        return launch_round(self.round, self.round_tags, self.plan)


class CollectionScheduleSerializer(OptionFields):
    """A schedule: `every_hours` or `daily_at` ("HH:MM"), `enabled`, and the round options. Its
    rules are the model's clean(); a changed timing recomputes `next_due_at`."""

    class Meta:
        model = CollectionSchedule
        fields = ["id", *SCHEDULE_FIELDS, "next_due_at", "last_started_at", "last_error", "created_at"]
        read_only_fields = ["next_due_at", "last_started_at", "last_error", "created_at"]

    def validate(self, attrs):
        schedule = copy.copy(self.instance) if self.instance is not None else CollectionSchedule()
        for name, value in attrs.items():
            if name != "tags":
                setattr(schedule, name, value)
        schedule.clean()
        return attrs

    def update(self, instance, validated_data):
        if any(name in validated_data and validated_data[name] != getattr(instance, name) for name in TIMING_FIELDS):
            instance.next_due_at = None  # recomputed from the new timing on save
        return super().update(instance, validated_data)


class RoundPermission(ModelPermissionsWithView):
    action_perms = {"cancel": ["rl.add_collectionround"], "start": ["rl.add_collectionround"]}


class CollectionRoundViewSet(StartedJobViewSet):
    """Collection rounds. POST starts one (202); GET one for its stage, progress and ranked sets;
    POST …/cancel/ stops it and its batches."""

    queryset = CollectionRound.objects.select_related("reward_model", "generator", "task").prefetch_related(
        "tags", "batches")
    serializer_class = CollectionRoundSerializer
    permission_classes = [RoundPermission]


class CollectionScheduleViewSet(viewsets.ModelViewSet):
    """Collection schedules (the beat starts their due rounds); POST …/start/ starts one now (202)."""

    queryset = CollectionSchedule.objects.select_related("reward_model", "generator", "task").prefetch_related("tags")
    serializer_class = CollectionScheduleSerializer
    permission_classes = [RoundPermission]

    @extend_schema(request=None, responses={202: CollectionRoundSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        try:
            started = start_from_schedule(self.get_object(), user=request.user)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) \
                from None
        return Response(CollectionRoundSerializer(started, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)


routes = [
    ("collection-rounds", CollectionRoundViewSet, "collection-round"),
    ("collection-schedules", CollectionScheduleViewSet, "collection-schedule"),
]
