from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from rest_framework import serializers

from .models import Candidate, CandidateSet, GenerationBatch, Generator
from .selection import select_inputs


def _as_api_error(error: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(getattr(error, "message_dict", {"non_field_errors": error.messages}))


class GeneratorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Generator
        fields = ["id", "name", "backend", "settings", "description", "active", "created_at"]

    def validate(self, attrs):
        instance = Generator(**{**({f: getattr(self.instance, f) for f in attrs} if self.instance else {}), **attrs})
        if self.instance is not None:
            instance.pk = self.instance.pk
        try:
            instance.clean()
        except DjangoValidationError as error:
            raise _as_api_error(error) from None
        attrs["settings"] = instance.settings
        return attrs


class CandidateSerializer(serializers.ModelSerializer):
    files = serializers.SerializerMethodField()

    class Meta:
        model = Candidate
        fields = ["public_id", "index", "settings", "seconds", "files", "created_at"]

    def get_files(self, candidate) -> dict[str, str]:
        request = self.context.get("request")
        urls = {kind: reverse("candidate-file", args=[candidate.public_id, kind]) for kind in ("image", "thumbnail")}
        return {k: request.build_absolute_uri(v) if request else v for k, v in urls.items()}


class CandidateSetSerializer(serializers.ModelSerializer):
    candidates = CandidateSerializer(many=True, read_only=True)

    class Meta:
        model = CandidateSet
        fields = ["id", "input", "status", "error", "attempts", "candidates"]


class GenerationBatchSerializer(serializers.ModelSerializer):
    generator = serializers.SlugRelatedField(slug_field="name", read_only=True)
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = GenerationBatch
        fields = ["id", "name", "generator", "candidates_per_input", "annotation_overlap", "for_annotation", "ranges", "seed",
                  "status", "progress",
                  "progress_done", "progress_failed", "progress_total", "error", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class GenerationBatchDetailSerializer(GenerationBatchSerializer):
    candidate_sets = CandidateSetSerializer(many=True, read_only=True)

    class Meta(GenerationBatchSerializer.Meta):
        fields = GenerationBatchSerializer.Meta.fields + ["candidate_sets"]
        read_only_fields = fields


class GenerationBatchLaunchSerializer(serializers.Serializer):
    """Launch: a generator by name, inputs by task/tag/ids, N, ranges (see generation.core.sampling.Ranges), seed;
    `for_annotation: false` for an evaluation batch."""

    name = serializers.CharField(required=False, allow_blank=True, default="")
    generator = serializers.SlugRelatedField(slug_field="name", queryset=Generator.objects.all())
    task = serializers.CharField(required=False)
    tag = serializers.CharField(required=False)
    inputs = serializers.ListField(child=serializers.IntegerField(), required=False)
    candidates_per_input = serializers.IntegerField(default=4)
    annotation_overlap = serializers.IntegerField(default=1)
    for_annotation = serializers.BooleanField(
        default=True, help_text="false: an evaluation batch (no annotation tasks; 1 candidate per input allowed).")
    ranges = serializers.JSONField(required=False, default=dict)
    seed = serializers.IntegerField(default=0, min_value=0)

    def create(self, validated_data):
        try:
            inputs = select_inputs(task=validated_data.get("task"), tag=validated_data.get("tag"),
                                   ids=validated_data.get("inputs"))
            return GenerationBatch.launch(
                generator=validated_data["generator"], inputs=inputs,
                candidates_per_input=validated_data["candidates_per_input"], ranges=validated_data["ranges"],
                seed=validated_data["seed"], name=validated_data["name"], user=self.context["request"].user,
                annotation_overlap=validated_data["annotation_overlap"],
                for_annotation=validated_data["for_annotation"],
            )
        except DjangoValidationError as error:
            raise _as_api_error(error) from None

    def to_representation(self, instance):
        return GenerationBatchSerializer(instance, context=self.context).data
