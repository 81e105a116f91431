"""REST: the generator leaderboard, read-only (`GET /api/leaderboard/?task=&dimension=`).

Reading it needs the view permission on study picks (ML engineers and platform admins)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from inputs.models import Dimension, Task
from onereward.bounds import SEED_RANGE

from . import leaderboard as board
from .models import StudyPick

MAX_RESAMPLES = 10_000


class LeaderboardQuerySerializer(serializers.Serializer):
    task = serializers.SlugRelatedField(slug_field="slug", queryset=Task.objects.all(), required=False,
                                        help_text="A task slug; all tasks when left out.")
    dimension = serializers.CharField(required=False, help_text=(
        f'A dimension slug, or "{board.ALL_DIMENSIONS}" for the pooled tables alone; each dimension and the pooled '
        "table when left out."))
    resamples = serializers.IntegerField(required=False, min_value=0, max_value=MAX_RESAMPLES,
                                         default=board.DEFAULT_RESAMPLES, help_text="Bootstrap resamples.")
    seed = serializers.IntegerField(required=False, default=0, help_text="Seed of the bootstrap.", **SEED_RANGE)

    def validate_dimension(self, value):
        if value != board.ALL_DIMENSIONS and not Dimension.objects.filter(slug=value).exists():
            raise serializers.ValidationError(f"no dimension {value!r}")
        return value


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    generator_id = serializers.IntegerField()
    generator = serializers.CharField()
    score = serializers.FloatField(help_text="Bradley-Terry log-strength, 0 = the table's average generator.")
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    rating = serializers.FloatField(help_text="Elo-like: 1000 + 400 / ln(10) x score.")
    rating_low = serializers.FloatField(allow_null=True)
    rating_high = serializers.FloatField(allow_null=True)
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    comparisons = serializers.IntegerField()


class LeaderboardTableSerializer(serializers.Serializer):
    task = serializers.CharField(source="task_slug")
    task_name = serializers.CharField()
    dimension = serializers.CharField(
        source="dimension_slug", help_text=f'"{board.ALL_DIMENSIONS}" for the pooled table.'
    )
    dimension_name = serializers.CharField()
    outcomes = serializers.IntegerField()
    items = serializers.IntegerField()
    level = serializers.FloatField()
    n_resamples = serializers.IntegerField()
    rows = LeaderboardRowSerializer(many=True)


class LeaderboardSerializer(serializers.Serializer):
    tables = LeaderboardTableSerializer(many=True)


class LeaderboardView(APIView):
    """Generators ranked by Bradley-Terry score from the human evaluation studies, per task and
    dimension and pooled per task, with percentile bootstrap intervals over study items."""

    # The default permission class reads the model from here: view on study picks.
    queryset = StudyPick.objects.none()

    @extend_schema(parameters=[LeaderboardQuerySerializer], responses=LeaderboardSerializer)
    def get(self, request):
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        tables = board.leaderboard(task=params.get("task"), dimension=params.get("dimension"),
                                   n_resamples=params["resamples"], seed=params["seed"])
        return Response(LeaderboardSerializer({"tables": tables}).data)
