"""Admin for collection rounds (rl/rounds.py): start one now (the add page, or "Start a round now" on
a schedule), watch it (stage, batches, scoring, tasks opened and judged, the sets in the strategy's
order), cancel it; edit the schedules the beat starts rounds from."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from onereward.bounds import SeedBounds
from onereward.jobs import progress_response
from onereward.started_jobs import StartedJobAdmin

from .rounds import (
    OPTION_FIELDS,
    SCHEDULE_FIELDS,
    TIMING_FIELDS,
    CollectionRound,
    CollectionSchedule,
    annotation_progress,
    error_text,
    launch_round,
    new_round,
    plan_round,
    stage_line,
    stage_progress,
    start_from_schedule,
)


class RangesField:
    def clean_ranges(self):
        return self.cleaned_data.get("ranges") or {}  # an empty box is the defaults, as for a batch


class CollectionRoundForm(SeedBounds, RangesField, forms.ModelForm):
    """A round started from the admin: the rules are rl.rounds.plan_round's, as for the API, the
    command line and the schedules."""

    class Meta:
        model = CollectionRound
        fields = ["name", *OPTION_FIELDS]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        round_, tags = new_round(name=cleaned.get("name") or "", **{name: cleaned.get(name) for name in OPTION_FIELDS})
        try:
            self.plan = plan_round(round_, tags)
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


class CollectionScheduleForm(SeedBounds, RangesField, forms.ModelForm):
    class Meta:
        model = CollectionSchedule
        fields = SCHEDULE_FIELDS


@admin.register(CollectionRound)
class CollectionRoundAdmin(StartedJobAdmin):
    add_form = CollectionRoundForm
    list_display = ["__str__", "strategy", "stage", "status", "where", "schedule", "created_by", "created_at"]
    list_filter = ["status", "stage", "strategy"]
    search_fields = ["name"]
    readonly_fields = ["name", "schedule", "strategy", "reward_model", "generators", "tags_list", "task",
                       "input_count", "candidates_per_input", "annotation_overlap", "top_k", "seed", "status", "stage",
                       "where", "worker", "error", "created_by", "created_at", "started_at", "finished_at"]
    fields = readonly_fields
    actions = ["cancel_rounds"]
    change_form_template = "admin/rl/collectionround/change_form.html"
    progress_template = "admin/rl/collectionround/_progress.html"

    def save_model(self, request, obj, form, change):
        # The plan the form checked is launched as it is: batches queued or the scoring job.
        if not change:
            obj.created_by = request.user
            launch_round(obj, form.cleaned_data.get("tags") or [], form.plan)

    def response_add(self, request, obj, post_url_continue=None):
        what = ("its judged sets are being scored on a GPU worker" if obj.ranks_judged_sets
                else "its batches are queued on the GPU workers")
        self.message_user(request, f"{obj} started: {what}; tasks open in the {obj.get_strategy_display().lower()} "
                                   f"order when it gets there.", messages.SUCCESS)
        return redirect("admin:rl_collectionround_change", obj.pk)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if add:
            context["title"] = "Start a collection round now"
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        round_ = self.get_object(request, unquote(object_id))
        if round_ is not None:
            ranked = round_.sets.select_related("candidate_set__input__task", "candidate_set__batch__generator",
                                                "task").order_by("rank", "pk")
            extra_context = {**(extra_context or {}), **self.progress_context(round_),
                             "progress_template": self.progress_template, "ranked": ranked}
        return super().change_view(request, object_id, form_url, extra_context)

    def progress_context(self, round_) -> dict:
        done, total = stage_progress(round_)
        return {"round": round_, "line": stage_line(round_), "batches": round_.batches.select_related("generator"),
                "annotation": annotation_progress(round_), "stage_done": done, "stage_total": total}

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/progress/", view(self.progress_view), name="rl_collectionround_progress"),
                *super().get_urls()]

    def progress_view(self, request, pk):
        """The round's status alone, polled by its change page (htmx) until it ends."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        round_ = get_object_or_404(CollectionRound, pk=pk)
        return progress_response(request, self.progress_template, self.progress_context(round_), round_)

    @admin.display(description="Where it is")
    def where(self, round_):
        return stage_line(round_)

    @admin.display(description="Generators")
    def generators(self, round_):
        batches = [(reverse("admin:generation_generationbatch_change", args=[b.pk]), b.generator, b)
                   for b in round_.batches.select_related("generator")]
        return format_html_join(", ", '<a href="{}">{}</a> ({})', batches) or "–"

    @admin.display(description="Tags")
    def tags_list(self, round_):
        return ", ".join(tag.name for tag in round_.tags.all()) or "every input"

    @admin.action(description="Cancel the selected rounds", permissions=["add"])
    def cancel_rounds(self, request, queryset):
        self.message_user(request, f"{sum(round_.cancel() for round_ in queryset)} round(s) cancelled.")


@admin.register(CollectionSchedule)
class CollectionScheduleAdmin(admin.ModelAdmin):
    form = CollectionScheduleForm
    list_display = ["name", "enabled", "timing", "strategy", "next_due_at", "last_started_at", "last_round",
                    "last_error"]
    list_filter = ["enabled", "strategy"]
    search_fields = ["name"]
    readonly_fields = ["next_due_at", "last_started_at", "last_error", "rounds_list"]
    actions = ["start_now"]
    change_form_template = "admin/rl/collectionschedule/change_form.html"

    def save_model(self, request, obj, form, change):
        if change and set(form.changed_data) & set(TIMING_FIELDS):
            obj.next_due_at = None  # recomputed from the new timing on save
        super().save_model(request, obj, form, change)

    @admin.display(description="Last round")
    def last_round(self, schedule):
        found = schedule.rounds.order_by("-created_at").first()
        if found is None:
            return "–"
        return format_html('<a href="{}">{}</a> ({})', reverse("admin:rl_collectionround_change", args=[found.pk]),
                           found, stage_line(found))

    @admin.display(description="Rounds started")
    def rounds_list(self, schedule):
        rounds = [(reverse("admin:rl_collectionround_change", args=[r.pk]), r, stage_line(r))
                  for r in schedule.rounds.order_by("-created_at")[:20]]
        return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>: {}', rounds) or "none yet"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/start/", view(self.start_view), name="rl_collectionschedule_start"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_start": self.can_start(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def can_start(self, request) -> bool:
        return request.user.has_perm("rl.add_collectionround")

    def start(self, request, schedule):
        try:
            started = start_from_schedule(schedule, user=request.user)
        except ValidationError as exc:
            self.message_user(request, f"{schedule}: not started: {error_text(exc)}", messages.ERROR)
            return None
        self.message_user(request, format_html('{}: <a href="{}">{}</a> started.', schedule,
                                               reverse("admin:rl_collectionround_change", args=[started.pk]),
                                               started), messages.SUCCESS)
        return started

    def start_view(self, request, pk):
        """The schedule page's "Start a round now" button."""
        if request.method != "POST" or not self.can_start(request):
            raise PermissionDenied
        started = self.start(request, get_object_or_404(CollectionSchedule, pk=pk))
        if started is None:
            return redirect("admin:rl_collectionschedule_change", pk)
        return redirect("admin:rl_collectionround_change", started.pk)

    def has_start_permission(self, request):
        return self.can_start(request)

    @admin.action(description="Start a round now", permissions=["start"])
    def start_now(self, request, queryset):
        for schedule in queryset:
            self.start(request, schedule)
