from rest_framework import serializers

from generation.models import Generator
from inputs.models import Tag
from onereward.runs import STATE_FIELDS, TrainingRunSerializer
from rewardmodel.models import RewardModelVersion

from .forms import RUN_FIELDS
from .models import PolicyCheckpoint, RLRun
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

    class Meta:
        model = PolicyCheckpoint
        fields = ["id", "run", "generator", "generator_name", "path", "steps", "final_reward", "evaluation", "study",
                  "reward_hacking", "created_at"]

    def get_reward_hacking(self, checkpoint) -> dict:
        return alarm(checkpoint)


class HumanStudySerializer(serializers.Serializer):
    tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all())
    judgments_per_item = serializers.IntegerField(min_value=1, default=3)
    ranges = serializers.JSONField(required=False, default=None, help_text=(
        "generation ranges of both batches (as a batch's); default: the run's rollout settings"))
