from django.urls import reverse
from rest_framework import serializers

from generation.models import Generator
from inputs.models import Tag
from onereward.bounds import SMALLINT_MAX
from onereward.runs import STATE_FIELDS, TrainingRunSerializer
from rewardmodel.models import RewardModelVersion

from .exports import export_states
from .forms import RUN_FIELDS
from .models import ExportFormat, PolicyCheckpoint, RLRun
from .reward_hacking import alarm

CURVES = ["reward_mean", "reward_history", "training_history"]


class RLRunSerializer(TrainingRunSerializer):
    base_generator = serializers.PrimaryKeyRelatedField(queryset=Generator.objects.all())
    reward_model = serializers.PrimaryKeyRelatedField(queryset=RewardModelVersion.objects.all())
    train_tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all(), required=False)
    eval_tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all(), required=False)
    checkpoint = serializers.SerializerMethodField()

    class Meta:
        model = RLRun
        fields = ["id", *RUN_FIELDS, *STATE_FIELDS, *CURVES, "checkpoint"]
        read_only_fields = [*STATE_FIELDS, *CURVES]

    def get_checkpoint(self, run) -> int | None:
        try:
            return run.checkpoint.pk
        except PolicyCheckpoint.DoesNotExist:
            return None


class PolicyCheckpointSerializer(serializers.ModelSerializer):
    generator_name = serializers.CharField(source="generator.name", read_only=True)
    reward_hacking = serializers.SerializerMethodField(
        help_text="The judge's and the human study's win rates against the base per task x dimension; "
                  "rows where the judge wins far more often are flagged")

    exports = serializers.SerializerMethodField(help_text=(
        '{"lora": {...}, "merged": {...}}: each export\'s status ("not made" before the first request), error, '
        "size in bytes, details, whether it can be downloaded (download_url) and why a format is refused (problem)"))

    class Meta:
        model = PolicyCheckpoint
        fields = ["id", "run", "generator", "generator_name", "path", "steps", "final_reward", "evaluation", "study",
                  "reward_hacking", "exports", "created_at"]

    def get_reward_hacking(self, checkpoint) -> dict:
        return alarm(checkpoint)

    def get_exports(self, checkpoint) -> dict:
        request = self.context.get("request")
        states = export_states(checkpoint)
        for format, state in states.items():
            url = reverse("policy-checkpoint-export-file", kwargs={"pk": checkpoint.pk, "kind": format})
            state["download_url"] = (request.build_absolute_uri(url) if request else url) if state["downloadable"] \
                else None
        return states


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=ExportFormat.choices)


class HumanStudySerializer(serializers.Serializer):
    tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all())
    judgments_per_item = serializers.IntegerField(min_value=1, max_value=SMALLINT_MAX, default=3)
    ranges = serializers.JSONField(required=False, default=None, help_text=(
        "generation ranges of both batches (as a batch's); default: the run's rollout settings"))
