from rest_framework import serializers

from onereward.runs import STATE_FIELDS, TrainingRunSerializer
from preferences.models import PreferenceDataset

from .forms import RUN_FIELDS
from .models import ReannotationRequest, RewardModelRun, RewardModelVersion

CURVES = ["samples_per_second", "loss_history", "validation_history"]


class RewardModelRunSerializer(TrainingRunSerializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=PreferenceDataset.objects.all())
    version = serializers.SerializerMethodField()

    class Meta:
        model = RewardModelRun
        fields = ["id", *RUN_FIELDS, *STATE_FIELDS, *CURVES, "version"]
        read_only_fields = [*STATE_FIELDS, *CURVES]

    def get_version(self, run) -> int | None:
        try:
            return run.version.pk
        except RewardModelVersion.DoesNotExist:
            return None


class RewardModelVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.IntegerField(source="run.dataset_id", read_only=True)

    class Meta:
        model = RewardModelVersion
        fields = ["id", "name", "run", "dataset", "model_path", "base_model", "template_version", "evaluation",
                  "zero_shot", "steps", "final_loss", "created_at"]


class SendBackSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=ReannotationRequest.Reason.choices)
    count = serializers.IntegerField(min_value=1)
    extra_judgments = serializers.IntegerField(min_value=1, default=1)


class ReannotationRequestSerializer(serializers.ModelSerializer):
    tasks = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = ReannotationRequest
        fields = ["id", "version", "reason", "extra_judgments", "tasks", "created_at"]
