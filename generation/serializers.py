from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from rest_framework import serializers

from onereward.bounds import SEED_RANGE, SMALLINT_MAX

from .models import Candidate, CandidateSet, GenerationBatch, Generator
from .selection import select_inputs


class GeneratorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Generator
        fields = ["id", "name", "backend", "settings", "description", "active", "created_at"]

    def validate(self, attrs):
        instance = Generator(**{**({f: getattr(self.instance, f) for f in attrs} if self.instance else {}), **attrs})
        if self.instance is not None:
            instance.pk = self.instance.pk
        instance.clean()  # the model's rules: DRF turns their ValidationError into field errors
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
        fields = ["id", "name", "generator", "candidates_per_input", "annotation_overlap", "for_annotation", "ranges",
                  "seed", "status", "progress", "progress_done", "progress_failed", "progress_total", "error",
                  "created_at", "started_at", "finished_at"]
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
    candidates_per_input = serializers.IntegerField(default=4, min_value=1, max_value=SMALLINT_MAX)
    annotation_overlap = serializers.IntegerField(default=1, min_value=1, max_value=SMALLINT_MAX)
    for_annotation = serializers.BooleanField(
        default=True, help_text="false: an evaluation batch (no annotation tasks; 1 candidate per input allowed).")
    ranges = serializers.JSONField(required=False, default=dict)
    seed = serializers.IntegerField(default=0, **SEED_RANGE)

    def validate_inputs(self, ids):
        # Unknown ids (2**31 among them) are refused with the field itself, by the selection's rule.
        if ids:
            try:
                select_inputs(ids=ids)
            except DjangoValidationError as error:
                raise serializers.ValidationError(error.message_dict["inputs"]) from None
        return ids

    def validate(self, attrs):
        # The selection's rules (unknown task, tag or id); DRF turns their ValidationError into field errors.
        attrs["inputs"] = list(select_inputs(task=attrs.pop("task", None), tag=attrs.pop("tag", None),
                                             ids=attrs.get("inputs")))
        GenerationBatch.checked(**attrs)  # the batch's own rules, reported by DRF with their fields
        return attrs

    def create(self, validated_data):
        return GenerationBatch.launch(user=self.context["request"].user, **validated_data)

    def to_representation(self, instance):
        return GenerationBatchSerializer(instance, context=self.context).data
