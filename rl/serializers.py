from rest_framework import serializers

from inputs.models import Tag
from generation.models import Generator
from rewardmodel.models import RewardModelVersion

from .forms import RUN_FIELDS
from .models import PolicyCheckpoint, RLRun


class RLRunSerializer(serializers.ModelSerializer):
    base_generator = serializers.PrimaryKeyRelatedField(queryset=Generator.objects.all())
    reward_model = serializers.PrimaryKeyRelatedField(queryset=RewardModelVersion.objects.all())
    train_tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all(), required=False)
    eval_tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all(), required=False)
    checkpoint = serializers.SerializerMethodField()

    class Meta:
        model = RLRun
        fields = ["id", *RUN_FIELDS, "status", "step", "total_steps", "loss", "reward_mean", "eta_seconds",
                  "reward_history", "training_history", "error", "checkpoint", "created_at", "started_at", "finished_at"]
        read_only_fields = ["status", "step", "total_steps", "loss", "reward_mean", "eta_seconds", "reward_history",
                            "training_history",
                            "error", "created_at", "started_at", "finished_at"]

    def get_checkpoint(self, run) -> int | None:
        try:
            return run.checkpoint.pk
        except PolicyCheckpoint.DoesNotExist:
            return None

    def create(self, validated_data):
        from django.core.exceptions import ValidationError as DjangoValidationError

        from .forms import start_run

        request = self.context.get("request")
        try:
            return start_run(user=request.user if request else None, **validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None


class PolicyCheckpointSerializer(serializers.ModelSerializer):
    generator_name = serializers.CharField(source="generator.name", read_only=True)

    class Meta:
        model = PolicyCheckpoint
        fields = ["id", "run", "generator", "generator_name", "path", "steps", "final_reward", "evaluation", "study",
                  "created_at"]


class HumanStudySerializer(serializers.Serializer):
    tags = serializers.SlugRelatedField(many=True, slug_field="name", queryset=Tag.objects.all())
    judgments_per_item = serializers.IntegerField(min_value=1, default=3)
