from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from .forms import InputArchiveForm, InputUploadForm
from .models import Dimension, Input, InputImport, Tag, Task, TaskDimension


class TaskDimensionInline(admin.TabularInline):
    model = TaskDimension
    extra = 0
    autocomplete_fields = ["dimension"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "input_kind",
        "prompt_mode",
        "default_prompt",
        "rl_probability",
        "judged_on",
        "active",
    ]
    list_editable = ["rl_probability", "active"]
    search_fields = ["name", "slug"]
    inlines = [TaskDimensionInline]

    @admin.display(description="Dimensions")
    def judged_on(self, task):
        return ", ".join(
            f"{link.dimension.name}{' (with prompt)' if link.only_with_prompt else ''}"
            for link in task.task_dimensions.select_related("dimension")
        )


@admin.register(Dimension)
class DimensionAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "definition", "query_includes_prompt", "order"]
    search_fields = ["name", "slug", "definition"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


def _image(url, title, size=160):
    return format_html(
        '<img src="{}" alt="{}" title="{}" style="max-width:{}px;max-height:{}px">', url, title, title, size, size
    )


@admin.register(Input)
class InputAdmin(admin.ModelAdmin):
    list_display = ["id", "preview", "task", "prompt", "size", "mask_share", "tag_list", "created_at"]
    list_filter = ["task", "tags", "created_at"]
    search_fields = ["prompt", "original_name", "content_hash"]
    readonly_fields = [
        "preview_large", "task", "width", "height", "mask_coverage", "content_hash", "original_name",
        "created_by", "created_at", "source", "mask", "thumbnail",
    ]
    fields = ["preview_large", "task", "prompt", "tags", "metadata", "width", "height", "mask_coverage",
              "content_hash", "original_name", "created_by", "created_at"]
    filter_horizontal = ["tags"]
    change_list_template = "admin/inputs/input/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("task").prefetch_related("tags")

    def get_readonly_fields(self, request, obj=None):
        # The pixels and the prompt define the input (its content hash): edit tags and metadata only.
        return [*self.readonly_fields, "prompt"]

    @admin.display(description="Preview")
    def preview(self, obj):
        return _image(reverse("input-file", args=[obj.pk, "thumbnail"]), obj.original_name, 96)

    @admin.display(description="Source and mask")
    def preview_large(self, obj):
        return format_html(
            "{} {}",
            _image(reverse("input-file", args=[obj.pk, "source"]), "source", 320),
            _image(reverse("input-file", args=[obj.pk, "mask"]), "mask", 320),
        )

    @admin.display(description="Size")
    def size(self, obj):
        return f"{obj.width}x{obj.height}"

    @admin.display(description="Mask", ordering="mask_coverage")
    def mask_share(self, obj):
        return f"{obj.mask_coverage:.0%}"

    @admin.display(description="Tags")
    def tag_list(self, obj):
        return ", ".join(tag.name for tag in obj.tags.all())

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_archive_view), name="inputs_input_import"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        """One input through the importer's rules (the same as the API and the command line)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InputUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            created = form.save(user=request.user)
            if created is not None:
                self.message_user(request, f"Imported input #{created.pk}.", messages.SUCCESS)
                return redirect("admin:inputs_input_change", created.pk)
        return self._render_form(request, form, "Add an input", multipart=True)

    def import_archive_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InputArchiveForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            job = form.save(user=request.user)
            self.message_user(
                request, f"{job.original_name} is queued for import; this page follows it.", messages.INFO
            )
            return redirect("admin:inputs_inputimport_change", job.pk)
        return self._render_form(request, form, "Import a zip of inputs", multipart=True)

    def _render_form(self, request, form, title, multipart):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
            "multipart": multipart,
        }
        return TemplateResponse(request, "admin/form_page.html", context)


@admin.register(InputImport)
class InputImportAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "status", "progress_figure", "created_by", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["original_name", "status_panel", "problem_list", "created_list", "defaults", "created_by",
                       "created_at", "started_at", "finished_at"]
    fields = readonly_fields
    change_form_template = "admin/inputs/inputimport/change_form.html"

    def has_add_permission(self, request):
        return False  # imports start from the Inputs page ("Import a zip")

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Progress")
    def progress_figure(self, job):
        return f"{job.progress_done}/{job.progress_total}" if job.progress_total else "-"

    @admin.display(description="Status")
    def status_panel(self, job):
        return format_html(
            '<span id="job-status" data-status="{}">{}</span> {} {}',
            job.status, job.get_status_display(), self.progress_figure(job), job.error,
        )

    @admin.display(description="Bad entries")
    def problem_list(self, job):
        if not job.problems:
            return "-"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((p["entry"], p["problem"]) for p in job.problems)
        )
        return format_html('<table class="import-problems"><tr><th>Entry</th><th>Problem</th></tr>{}</table>', rows)

    @admin.display(description="Imported inputs")
    def created_list(self, job):
        inputs = list(job.created_inputs.all()[:200])
        if not inputs:
            return "-"
        return format_html_join(
            ", ", '<a href="{}">#{}</a>', ((reverse("admin:inputs_input_change", args=[i.pk]), i.pk) for i in inputs)
        )
