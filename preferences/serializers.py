"""The API's validation layer for preference dataset versions."""
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework import serializers

from generation.models import GenerationBatch
from inputs.models import Dimension, Task
from onereward.bounds import SEED_RANGE

from .export import checked_dataset, save_dataset, stored_files
from .models import FeedbackEvent, FeedbackImport, PreferenceDataset

SELECTIONS = ("batches", "tasks", "dimensions", "annotators")


class PreferenceDatasetSerializer(serializers.ModelSerializer):
    """A dataset version: its options, its build's progress and, once built, its files."""

    batches = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    tasks = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")
    dimensions = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")
    annotators = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    files = serializers.SerializerMethodField()
    inputs_per_split = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()
    weak_pairs = serializers.SerializerMethodField()

    class Meta:
        model = PreferenceDataset
        fields = [
            "id",
            "name",
            "version",
            "description",
            "status",
            "progress_done",
            "progress_total",
            "error",
            "batches",
            "tasks",
            "dimensions",
            "annotators",
            "submitted_from",
            "submitted_until",
            "good_standing_only",
            "min_gold_accuracy",
            "include_gold",
            "include_repeats",
            "include_simulated",
            "pairing",
            "aggregation",
            "tie_rule",
            "min_votes",
            "train_fraction",
            "validation_fraction",
            "test_fraction",
            "split_seed",
            "embed_images",
            "formats",
            "implicit_feedback",
            "implicit_weight",
            "implicit_sources",
            "weak_pairs",
            "pair_count",
            "judgment_count",
            "counts",
            "inputs_per_split",
            "warnings",
            "content_hash",
            "files",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_weak_pairs(self, dataset) -> int:
        """Pairs from production feedback events (in pair_count too)."""
        return (dataset.manifest or {}).get("weak_pairs", 0)

    def get_inputs_per_split(self, dataset) -> dict[str, int]:
        return (dataset.manifest or {}).get("inputs_per_split", {})

    def get_warnings(self, dataset) -> list[str]:
        """Problems of the splits found when the version was built (see preferences.core.splits)."""
        return (dataset.manifest or {}).get("warnings", [])

    def get_files(self, dataset) -> list[dict]:
        request = self.context.get("request")
        files = []
        for name in stored_files(dataset):
            url = reverse("preference-dataset-download", kwargs={"pk": dataset.pk, "name": name})
            info = dataset.manifest.get("files", {}).get(name, {})
            files.append(
                {
                    "name": name,
                    "rows": info.get("rows"),
                    "bytes": info.get("bytes"),
                    "sha256": info.get("sha256"),
                    "url": request.build_absolute_uri(url) if request else url,
                }
            )
        return files


class PreferenceDatasetCreateSerializer(serializers.ModelSerializer):
    """Build a new version: POST the options (tasks and dimensions by slug, annotators by username)."""

    batches = serializers.PrimaryKeyRelatedField(many=True, required=False, queryset=GenerationBatch.objects.all())
    tasks = serializers.SlugRelatedField(many=True, required=False, slug_field="slug", queryset=Task.objects.all())
    dimensions = serializers.SlugRelatedField(
        many=True, required=False, slug_field="slug", queryset=Dimension.objects.all()
    )
    annotators = serializers.SlugRelatedField(
        many=True, required=False, slug_field="username", queryset=get_user_model().objects.all()
    )
    formats = serializers.ListField(child=serializers.ChoiceField(choices=["jsonl", "trl"]), required=False)

    class Meta:
        model = PreferenceDataset
        fields = PreferenceDataset.OPTION_FIELDS
        extra_kwargs = {"split_seed": SEED_RANGE}

    def validate(self, attrs):
        # The model's own rules; DRF turns the ValidationError they raise into field errors.
        request = self.context.get("request")
        selections = {key: attrs.pop(key) for key in SELECTIONS if key in attrs}
        return {"dataset": checked_dataset(user=request.user if request else None, **attrs), **selections}

    def create(self, validated_data):
        return save_dataset(**validated_data)

    def to_representation(self, instance):
        return PreferenceDatasetSerializer(instance, context=self.context).data


class FeedbackEventSerializer(serializers.ModelSerializer):
    candidate = serializers.SlugRelatedField(slug_field="public_id", read_only=True)

    class Meta:
        model = FeedbackEvent
        fields = ["id", "source", "external_id", "event", "input", "candidate", "image_hash", "occurred_at",
                  "imported_at"]
        read_only_fields = fields


class FeedbackImportSerializer(serializers.Serializer):
    """Either `events` (a list of event objects, as the JSONL rows) or `file` (a JSONL or CSV upload)."""

    events = serializers.ListField(child=serializers.JSONField(), required=False, max_length=100_000)
    file = serializers.FileField(required=False)
    source = serializers.CharField(max_length=100, required=False, default="",
                                   help_text="The source of events that name none.")

    def validate(self, attrs):
        if ("events" in attrs) == ("file" in attrs):
            raise serializers.ValidationError("give either events (a list) or file (JSONL or CSV)")
        return attrs


class FeedbackImportJobSerializer(serializers.ModelSerializer):
    """A large feedback file imported on a worker: follow `status`, `phase` and `progress` (in [0, 1]
    of the phase); then `created` and `already_stored`, or `problems` (the bad rows) when refused."""

    progress = serializers.FloatField(read_only=True)
    error = serializers.CharField(source="error_cause", read_only=True)

    class Meta:
        model = FeedbackImport
        fields = ["id", "name", "source", "status", "phase", "progress", "progress_done", "progress_total", "created",
                  "already_stored", "problems", "error", "created_at", "started_at", "finished_at"]
        read_only_fields = fields
