"""The API's one validation layer for inputs; the rules themselves live in `importing`."""
from django.urls import reverse
from rest_framework import serializers

from .core.images import CanvasSpec, InputProblem
from .importing import ImportRejected, find_problems, spec_from_upload, store_inputs
from .models import Dimension, Input, InputImport, Tag, Task
from .validators import validate_prompt_length


def _problems_error(problems) -> serializers.ValidationError:
    return serializers.ValidationError({"problems": [p.as_dict() for p in problems]})


class DimensionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dimension
        fields = ["slug", "name", "definition", "query_includes_prompt", "order"]


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]


class TaskSerializer(serializers.ModelSerializer):
    dimensions = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["slug", "name", "description", "input_kind", "prompt_mode", "default_prompt", "rl_probability",
                  "active", "dimensions"]

    def get_dimensions(self, task) -> list[dict]:
        return [
            {"slug": link.dimension.slug, "only_with_prompt": link.only_with_prompt}
            for link in task.task_dimensions.select_related("dimension")
        ]


class TaskField(serializers.SlugRelatedField):
    """A task by slug; an unknown one is named with the tasks that exist."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", queryset=Task.objects.filter(active=True), **kwargs)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            known = ", ".join(self.get_queryset().values_list("slug", flat=True))
            raise serializers.ValidationError(f"unknown task {data!r} (known tasks: {known})") from None


class InputSerializer(serializers.ModelSerializer):
    task = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    effective_prompt = serializers.CharField(read_only=True)
    dimensions = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = Input
        fields = ["id", "task", "prompt", "effective_prompt", "dimensions", "width", "height", "mask_coverage",
                  "content_hash", "original_name", "tags", "metadata", "files", "created_at"]

    def get_dimensions(self, obj) -> list[str]:
        return [d.slug for d in obj.judged_dimensions()]

    def get_files(self, obj) -> dict[str, str]:
        request = self.context.get("request")
        urls = {kind: reverse("input-file", args=[obj.pk, kind]) for kind in ("source", "mask", "thumbnail")}
        return {k: request.build_absolute_uri(v) if request else v for k, v in urls.items()}


class CanvasField(serializers.JSONField):
    """{"padding": [l, t, r, b]} | {"size": [w, h]} | {"ratio": "16:9"}, checked by CanvasSpec."""

    default_error_messages = {"invalid": "canvas must be a JSON object"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            CanvasSpec.parse(value, "canvas")
        except InputProblem as problem:
            raise serializers.ValidationError(problem.problem) from None
        return value


class InputCreateSerializer(serializers.Serializer):
    task = TaskField()
    source = serializers.FileField()
    mask = serializers.FileField(required=False)
    prompt = serializers.CharField(required=False, allow_blank=True, default="", validators=[validate_prompt_length])
    canvas = CanvasField(required=False,
                         help_text='Extend only: {"padding": [l, t, r, b]} | {"size": [w, h]} | {"ratio": "16:9"}')
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    metadata = serializers.JSONField(required=False, default=dict)

    def validate(self, attrs):
        # Every import rule (decoding, sizes, prompt, duplicates) runs here, as for the other entry points.
        try:
            spec = spec_from_upload(
                task=attrs["task"].slug,
                source=attrs["source"],
                mask=attrs.get("mask"),
                prompt=attrs.get("prompt", ""),
                canvas=attrs.get("canvas"),
                tags=attrs.get("tags"),
                metadata=attrs.get("metadata"),
            )
        except InputProblem as problem:
            raise _problems_error([problem]) from None
        prepared, problems = find_problems([spec])
        if problems:
            raise _problems_error(problems)
        return {"prepared": prepared}

    def create(self, validated_data):
        try:
            return store_inputs(validated_data["prepared"], user=self.context["request"].user)[0]
        except ImportRejected as rejected:
            # The same content was stored by another import after validate() checked it.
            raise _problems_error(rejected.problems) from None

    def to_representation(self, instance):
        return InputSerializer(instance, context=self.context).data


class InputImportSerializer(serializers.ModelSerializer):
    created_inputs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = InputImport
        fields = ["id", "original_name", "status", "progress", "progress_done", "progress_total", "error", "problems",
                  "defaults", "created_inputs", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class InputImportCreateSerializer(serializers.Serializer):
    archive = serializers.FileField()
    task = TaskField(required=False)
    prompt = serializers.CharField(required=False, allow_blank=True, default="", validators=[validate_prompt_length],
                                   help_text="For entries without a prompt of their own.")
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    canvas = CanvasField(required=False)

    def validate_archive(self, archive):
        if not archive.name.lower().endswith(".zip"):
            raise serializers.ValidationError(f"{archive.name}: give a .zip archive")
        return archive

    def create(self, validated_data):
        return InputImport.queue(
            validated_data["archive"],
            task=validated_data.get("task"),
            prompt=validated_data.get("prompt", ""),
            tags=validated_data.get("tags", []),
            canvas=validated_data.get("canvas"),
            user=self.context["request"].user,
        )

    def to_representation(self, instance):
        return InputImportSerializer(instance, context=self.context).data
