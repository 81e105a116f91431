from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from onereward.jobs import progress_response

from .forms import BatchLaunchForm
from .models import Candidate, CandidateSet, GenerationBatch, Generator


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "active", "created_at"]
    list_filter = ["backend", "active"]
    search_fields = ["name", "description"]


class CandidateSetInline(admin.TabularInline):
    model = CandidateSet
    fields = ["input", "status", "attempts", "worker", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    max_num = 0


@admin.register(GenerationBatch)
class GenerationBatchAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "generator",
        "candidates_per_input",
        "purpose",
        "status",
        "progress_figure",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "for_annotation", "generator"]
    readonly_fields = [
        "name",
        "generator",
        "candidates_per_input",
        "purpose",
        "ranges",
        "seed",
        "status",
        "progress_done",
        "progress_failed",
        "progress_total",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    fields = readonly_fields
    inlines = [CandidateSetInline]
    actions = ["cancel_batches", "resume_batches"]
    change_form_template = "admin/generation/generationbatch/change_form.html"

    def has_change_permission(self, request, obj=None):
        # Batches are launched, watched, cancelled and resumed, never edited.
        return False if obj is not None and request.method == "POST" else super().has_change_permission(request, obj)

    @admin.display(description="For", ordering="for_annotation")
    def purpose(self, batch):
        return "annotation" if batch.for_annotation else "evaluation"

    @admin.display(description="Progress")
    def progress_figure(self, batch):
        failed = f", {batch.progress_failed} failed" if batch.progress_failed else ""
        return f"{batch.progress_done}/{batch.progress_total}{failed}"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/progress/", view(self.progress_view), name="generation_generationbatch_progress"),
            path("<int:pk>/grid/", view(self.grid_view), name="generation_generationbatch_grid"),
            path("<int:pk>/cancel/", view(self.cancel_view), name="generation_generationbatch_cancel"),
            path("<int:pk>/resume/", view(self.resume_view), name="generation_generationbatch_resume"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = BatchLaunchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            batch = form.save(user=request.user)
            if batch is not None:
                self.message_user(request, f"{batch} is queued: {batch.progress_total} inputs x "
                                           f"{batch.candidates_per_input} candidates.", messages.SUCCESS)
                return redirect("admin:generation_generationbatch_change", batch.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Launch a generation batch",
            "form": form,
            "multipart": False,
        }
        return TemplateResponse(request, "admin/form_page.html", context)

    def _batch(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(GenerationBatch, pk=pk)

    def progress_view(self, request, pk):
        """The progress bar alone, polled by the change page (htmx) until the batch finishes."""
        batch = self._batch(request, pk)
        return progress_response(request, "admin/generation/generationbatch/_progress.html", {"batch": batch}, batch)

    def grid_view(self, request, pk):
        batch = self._batch(request, pk)
        sets = (
            batch.candidate_sets.select_related("input", "input__task")
            .prefetch_related("candidates")
            .order_by("input_id")
        )
        page = Paginator(sets, 20).get_page(request.GET.get("page"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "batch": batch, "page": page,
                   "title": f"{batch}: candidates"}
        return TemplateResponse(request, "admin/generation/generationbatch/grid.html", context)

    def cancel_view(self, request, pk):
        batch = self._batch(request, pk)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        if batch.cancel():
            self.message_user(request, f"{batch} is cancelled; candidates made so far are kept.", messages.SUCCESS)
        return redirect("admin:generation_generationbatch_change", batch.pk)

    def resume_view(self, request, pk):
        batch = self._batch(request, pk)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        if batch.resume():
            self.message_user(request, f"{batch} is queued again for its unfinished inputs.", messages.SUCCESS)
        return redirect("admin:generation_generationbatch_change", batch.pk)

    @admin.action(description="Cancel the selected batches", permissions=["add"])
    def cancel_batches(self, request, queryset):
        cancelled = sum(batch.cancel() for batch in queryset)
        self.message_user(request, f"{cancelled} batch(es) cancelled.")

    @admin.action(description="Resume the selected batches", permissions=["add"])
    def resume_batches(self, request, queryset):
        resumed = sum(batch.resume() for batch in queryset)
        self.message_user(request, f"{resumed} batch(es) queued again.")


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["public_id", "preview", "candidate_set", "index", "seconds", "created_at"]
    readonly_fields = ["preview", "candidate_set", "index", "public_id", "settings", "seconds", "created_at"]
    fields = readonly_fields
    list_filter = ["candidate_set__batch"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Image")
    def preview(self, candidate):
        return format_html(
            '<img src="{}" style="max-height:96px">',
            reverse("candidate-file", args=[candidate.public_id, "thumbnail"]),
        )
