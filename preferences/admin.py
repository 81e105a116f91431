"""Admin for preference dataset versions: build one from a form, watch it build, download its files.

Versions are immutable: the change page shows what a version holds and never saves; a new set of
options (or the same options over newer judgments) is a new version. Deleting a version removes
its files once the deletion commits.
"""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from onereward.files import stored_file_response
from onereward.jobs import progress_response

from .core.splits import SPLITS
from .export import create_dataset, delete_files, stored_files
from .feedback import FeedbackRejected, import_file
from .feedback_imports import needs_background, start_import
from .forms import FeedbackImportForm, PreferenceDatasetForm
from .models import FeedbackEvent, FeedbackImport, PreferenceDataset

CONTENT_TYPES = {".parquet": "application/vnd.apache.parquet", ".jsonl": "application/jsonl",
                 ".json": "application/json"}


@admin.register(PreferenceDataset)
class PreferenceDatasetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "progress_figure", "pairing", "pair_count", "judgment_count", "short_hash",
                    "created_by", "created_at"]
    list_filter = ["status", "name", "pairing"]
    search_fields = ["name", "description", "content_hash"]
    readonly_fields = [
        "name",
        "version",
        "description",
        "status",
        "progress_figure",
        "error",
        "split_warnings",
        "options_summary",
        "inputs_per_split",
        "counts_table",
        "file_links",
        "pair_count",
        "judgment_count",
        "content_hash",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    fields = readonly_fields
    actions = ["rebuild_as_new_version", "cancel_builds"]
    change_form_template = "admin/preferences/preferencedataset/change_form.html"

    def has_change_permission(self, request, obj=None):
        # Versions are never edited: the change page is for reading.
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Progress")
    def progress_figure(self, dataset):
        return f"{dataset.progress_done}/{dataset.progress_total} candidate sets"

    @admin.display(description="Content hash")
    def short_hash(self, dataset):
        return dataset.content_hash[:12]

    @admin.display(description="Options")
    def options_summary(self, dataset):
        def names(queryset, attribute="pk"):
            values = [str(getattr(item, attribute)) for item in queryset]
            return ", ".join(values) if values else "all"

        lines = [
            ("Batches", names(dataset.batches.all(), "__str__")),
            ("Tasks", names(dataset.tasks.all(), "slug")),
            ("Dimensions", names(dataset.dimensions.all(), "slug")),
            ("Annotators", names(dataset.annotators.all(), "username")),
            ("Submitted", f"{dataset.submitted_from or '…'} to {dataset.submitted_until or '…'}"),
            (
                "Good standing only",
                f"{dataset.good_standing_only} (min gold accuracy: "
                f"{dataset.min_gold_accuracy if dataset.min_gold_accuracy is not None else 'QC threshold'})",
            ),
            ("Gold / repeats / simulated included",
             f"{dataset.include_gold} / {dataset.include_repeats} / {dataset.include_simulated}"),
            ("Production feedback",
             f"weak pairs of weight {dataset.implicit_weight:g} from "
             f"{', '.join(dataset.implicit_sources) or 'every source'}: "
             f"{(dataset.manifest or {}).get('weak_pairs', 0)} pairs"
             if dataset.implicit_feedback else "not included"),
            (
                "Pairing",
                f"{dataset.get_pairing_display()}; {dataset.get_aggregation_display()}; ties: "
                f"{dataset.get_tie_rule_display()}; min votes {dataset.min_votes}",
            ),
            (
                "Splits",
                f"train {dataset.train_fraction:g} / validation {dataset.validation_fraction:g} / "
                f"test {dataset.test_fraction:g}, seed {dataset.split_seed}",
            ),
            (
                "Files",
                f"Parquet{''.join(', ' + f for f in dataset.formats)}"
                f"{', images embedded' if dataset.embed_images else ', images by storage URI'}",
            ),
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", lines))

    @admin.display(description="Warnings")
    def split_warnings(self, dataset):
        warnings = (dataset.manifest or {}).get("warnings") or []
        if not warnings:
            return "–"
        return format_html_join("", '<p class="errornote">{}</p>', ((warning,) for warning in warnings))

    @admin.display(description="Inputs per split")
    def inputs_per_split(self, dataset):
        counts = (dataset.manifest or {}).get("inputs_per_split")
        if not counts:
            return "–"
        return ", ".join(f"{split} {counts.get(split, 0)}" for split in SPLITS)

    @admin.display(description="Pairs per task x dimension")
    def counts_table(self, dataset):
        if not dataset.counts:
            return "–"
        rows = [
            (
                task,
                dimension,
                split_counts.get("train", 0),
                split_counts.get("validation", 0),
                split_counts.get("test", 0),
            )
            for task, per_dimension in sorted(dataset.counts.items())
            for dimension, split_counts in sorted(per_dimension.items())
        ]
        return format_html(
            "<table><tr><th>Task</th><th>Dimension</th><th>Train</th><th>Validation</th><th>Test</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="Files")
    def file_links(self, dataset):
        names = stored_files(dataset)
        if not names:
            return "–"
        info = dataset.manifest.get("files", {})
        return format_html_join(
            "",
            '<div><a href="{}">{}</a> {}</div>',
            (
                (
                    reverse("admin:preferences_preferencedataset_file", args=[dataset.pk, name]),
                    name,
                    f"({info[name]['rows']} rows, {info[name]['bytes']:,} bytes)" if name in info else "",
                )
                for name in names
            ),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/progress/", view(self.progress_view), name="preferences_preferencedataset_progress"),
            path("<int:pk>/files/<path:name>", view(self.file_view), name="preferences_preferencedataset_file"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {}
        if "from" in request.GET:
            initial = _options_of(get_object_or_404(PreferenceDataset, pk=request.GET["from"]))
        form = PreferenceDatasetForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            dataset = form.save(user=request.user)
            if dataset is not None:
                self.message_user(request, f"{dataset} is queued.", messages.SUCCESS)
                return redirect("admin:preferences_preferencedataset_change", dataset.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Build a preference dataset version",
            "form": form,
            "multipart": False,
        }
        return TemplateResponse(request, "admin/form_page.html", context)

    def _dataset(self, request, pk) -> PreferenceDataset:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(PreferenceDataset, pk=pk)

    def progress_view(self, request, pk):
        """The build's status alone, polled by the change page (htmx) until it finishes."""
        dataset = self._dataset(request, pk)
        return progress_response(request, "admin/preferences/preferencedataset/_progress.html",
                                 {"dataset": dataset}, dataset)

    def file_view(self, request, pk, name):
        dataset = self._dataset(request, pk)
        if name not in stored_files(dataset):
            raise Http404("no such file in this dataset")
        suffix = name[name.rfind(".") :]
        response = stored_file_response(
            f"{dataset.storage_prefix}/{name}", CONTENT_TYPES.get(suffix, "application/octet-stream")
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{dataset.name}-v{dataset.version}-{name.replace("/", "-")}"'
        )
        return response

    def delete_model(self, request, obj):
        delete_files(obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for dataset in queryset:
            delete_files(dataset)
        super().delete_queryset(request, queryset)

    @admin.action(description="Build again as a new version (same options, current judgments)", permissions=["add"])
    def rebuild_as_new_version(self, request, queryset):
        for dataset in queryset:
            options = _options_of(dataset)
            created = create_dataset(user=request.user, **options)
            self.message_user(request, f"{created} is queued.", messages.SUCCESS)

    @admin.action(description="Cancel the selected builds", permissions=["add"])
    def cancel_builds(self, request, queryset):
        cancelled = sum(dataset.cancel() for dataset in queryset)
        self.message_user(request, f"{cancelled} build(s) cancelled.")


def _options_of(dataset: PreferenceDataset) -> dict:
    """A version's options, to build another version with them."""
    fields = [
        name
        for name in PreferenceDatasetForm.Meta.fields
        if name not in ("batches", "tasks", "dimensions", "annotators")
    ]
    options = {name: getattr(dataset, name) for name in fields}
    options.update(
        batches=list(dataset.batches.all()),
        tasks=list(dataset.tasks.all()),
        dimensions=list(dataset.dimensions.all()),
        annotators=list(dataset.annotators.all()),
    )
    return options


@admin.register(FeedbackEvent)
class FeedbackEventAdmin(admin.ModelAdmin):
    """Production feedback events; imported from a JSONL or CSV file ("Import feedback"), the API or
    `manage.py import_feedback`, never typed in."""

    list_display = ["__str__", "event", "input", "candidate", "source", "occurred_at", "imported_at"]
    list_filter = ["event", "source"]
    search_fields = ["external_id", "source"]
    readonly_fields = ["source", "external_id", "event", "input", "candidate", "image", "image_hash", "occurred_at",
                       "imported_by", "imported_at"]
    fields = readonly_fields
    change_list_template = "admin/preferences/feedbackevent/change_list.html"

    def has_add_permission(self, request):
        return False  # imported, see import_view

    def has_change_permission(self, request, obj=None):
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("import/", view(self.import_view), name="preferences_feedbackevent_import"),
                *super().get_urls()]

    def import_view(self, request):
        if not request.user.has_perm("preferences.add_feedbackevent"):
            raise PermissionDenied
        form = FeedbackImportForm(request.POST or None, request.FILES or None)
        problems = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if needs_background(upload):
                    job = start_import(upload, user=request.user, source=form.cleaned_data["source"])
                    self.message_user(request, f"{upload.name} is being imported on a worker.", messages.SUCCESS)
                    return redirect("admin:preferences_feedbackimport_change", job.pk)
                done = import_file(upload.read(), upload.name, user=request.user,
                                   default_source=form.cleaned_data["source"])
            except FeedbackRejected as rejected:
                problems = rejected.problems
                self.message_user(request, f"{len(problems)} bad row(s); nothing was imported.", messages.ERROR)
            else:
                self.message_user(request, f"{done.created} event(s) imported, {done.already_stored} already stored.",
                                  messages.SUCCESS)
                return redirect("admin:preferences_feedbackevent_changelist")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "multipart": True,
                   "title": "Import feedback", "problems": problems}
        return TemplateResponse(request, "admin/preferences/feedbackevent/import.html", context)


@admin.register(FeedbackImport)
class FeedbackImportAdmin(admin.ModelAdmin):
    """Large feedback files imported on a worker ("Import feedback" starts them): the page follows the
    phase and the share done, then shows the counts or the bad rows; never edited."""

    list_display = ["__str__", "status", "phase", "created", "already_stored", "created_by", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["name", "source", "status", "phase", "progress_done", "progress_total", "created",
                       "already_stored", "error", "created_by", "created_at", "started_at", "finished_at"]
    fields = readonly_fields
    change_form_template = "admin/preferences/feedbackimport/change_form.html"

    def has_add_permission(self, request):
        return False  # started from "Import feedback"

    def has_change_permission(self, request, obj=None):
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/progress/", view(self.progress_view), name="preferences_feedbackimport_progress"),
                *super().get_urls()]

    def progress_view(self, request, pk):
        """The import's status alone, polled by its change page (htmx) until it ends."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(FeedbackImport, pk=pk)
        return progress_response(request, "admin/preferences/feedbackimport/_progress.html", {"job": job}, job)
