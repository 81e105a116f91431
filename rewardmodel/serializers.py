from rest_framework import serializers

from onereward.bounds import INTEGER_MAX, SMALLINT_MAX
from onereward.runs import STATE_FIELDS, TrainingRunSerializer
from preferences.models import PreferenceDataset

from .ablation import check_ablation, launch
from .forms import RUN_FIELDS
from .models import JudgeAblation, ReannotationRequest, RewardModelRun, RewardModelVersion

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
    count = serializers.IntegerField(min_value=1, max_value=INTEGER_MAX)
    extra_judgments = serializers.IntegerField(min_value=1, max_value=SMALLINT_MAX, default=1)


class ReannotationRequestSerializer(serializers.ModelSerializer):
    tasks = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = ReannotationRequest
        fields = ["id", "version", "reason", "extra_judgments", "tasks", "created_at"]


ABLATION_STATE = ["status", "progress_done", "progress_total", "error", "results", "worker", "created_at",
                  "started_at", "finished_at"]


class JudgeAblationSerializer(serializers.ModelSerializer):
    """POST starts an ablation: `versions` (ids), optional `dataset` (id; the versions' own by
    default), `base_model` and/or `zero_shot` (the versions' base untrained), `variants` (e.g.
    ["v1", "v2+no-prompt", "v1+source"]; default the method's query). The rules are
    rewardmodel.ablation.check_ablation's; DRF turns its ValidationError into a 400 by field."""

    versions = serializers.PrimaryKeyRelatedField(many=True, required=False,
                                                  queryset=RewardModelVersion.objects.select_related("run__dataset"))
    dataset = serializers.PrimaryKeyRelatedField(queryset=PreferenceDataset.objects.all(), required=False,
                                                 allow_null=True)
    zero_shot = serializers.BooleanField(write_only=True, required=False, default=False)
    variants = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=64)
    batch_size = serializers.IntegerField(min_value=1, max_value=INTEGER_MAX, required=False, default=16)

    class Meta:
        model = JudgeAblation
        fields = ["id", "name", "versions", "dataset", "base_model", "zero_shot", "variants", "batch_size",
                  *ABLATION_STATE]
        read_only_fields = ABLATION_STATE

    def validate(self, attrs):
        checked = check_ablation(versions=attrs.get("versions", []), dataset=attrs.get("dataset"),
                                 base_model=attrs.get("base_model", ""), zero_shot=attrs.get("zero_shot", False),
                                 variants=attrs.get("variants", []), batch_size=attrs.get("batch_size", 16))
        return {**attrs, **checked}

    def create(self, validated_data):
        request = self.context.get("request")
        user = request.user if request and request.user.is_authenticated else None
        versions = validated_data.pop("versions", [])
        validated_data.pop("zero_shot", None)
        ablation = JudgeAblation(created_by=user, **validated_data)
        launch(ablation, versions)
        return ablation
