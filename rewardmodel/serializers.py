from rest_framework import serializers

from preferences.models import PreferenceDataset

from .forms import RUN_FIELDS
from .models import ReannotationRequest, RewardModelRun, RewardModelVersion


class RewardModelRunSerializer(serializers.ModelSerializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=PreferenceDataset.objects.all())
    version = serializers.SerializerMethodField()

    class Meta:
        model = RewardModelRun
        fields = ["id", *RUN_FIELDS, "status", "step", "total_steps", "loss", "eta_seconds", "samples_per_second",
                  "loss_history", "validation_history", "error", "version", "created_at", "started_at", "finished_at"]
        read_only_fields = ["status", "step", "total_steps", "loss", "eta_seconds", "samples_per_second",
                            "loss_history", "validation_history", "error", "created_at", "started_at", "finished_at"]

    def get_version(self, run) -> int | None:
        try:
            return run.version.pk
        except RewardModelVersion.DoesNotExist:
            return None

    def create(self, validated_data):
        from django.core.exceptions import ValidationError as DjangoValidationError

        from .forms import start_run

        request = self.context.get("request")
        try:
            return start_run(user=request.user if request else None, **validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None


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
