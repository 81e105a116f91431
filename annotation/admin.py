"""Admin for annotation quality: the quality-control page, gold answers, annotator statuses and the
quality-control settings.

The quality-control page and the batch annotation progress hang off the annotation tasks' admin
(its change list links to them), so they follow that model's permissions: platform admins edit,
ML engineers view, annotators never reach the admin. Charts are drawn by onereward.charts.
"""
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from generation.models import GenerationBatch
from onereward import charts

from . import quality
from .models import AnnotationTask, AnnotatorStatus, QualityControlSettings, SimulatedAnnotator, SlotKind

PERIODS = {"1": ("Last 24 hours", 1), "7": ("Last 7 days", 7), "30": ("Last 30 days", 30), "all": ("All time", None)}
# The default keeps the page quick on a large platform (all time over a million judgments takes
# seconds) and shows how annotators work now; pausing itself always looks at every gold judgment.
DEFAULT_PERIOD = "30"
BATCHES_SHOWN = 50
BEST_COLOUR, WORST_COLOUR, WARN_COLOUR, OK_COLOUR = "#2e7d32", "#c62828", "#c62828", "#417690"


# --- inline SVG charts ----------------------------------------------------------------------------


def _percent(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def accuracy_chart(rows: list[quality.AnnotatorQuality], threshold: float, min_picks: int) -> str:
    """Horizontal bars: gold accuracy per annotator, the pausing threshold as a dashed line. Bars of
    annotators under the threshold with enough gold picks are red; with too few picks, pale."""
    bars = [charts.Bar(
        label=row.username, value=row.gold.share or 0.0, colour=WARN_COLOUR if row.below_threshold else OK_COLOUR,
        note=f"{_percent(row.gold.share)} · {row.gold.correct}/{row.gold.total}",
        tip=f"{row.username}: {row.gold.correct} of {row.gold.total} ({_percent(row.gold.share)})",
        faded=row.gold.total < min_picks) for row in rows if row.gold.total]
    return charts.bar_chart(bars, title="Gold accuracy per annotator", css_class="qc-chart",
                            ticks=(0, 0.25, 0.5, 0.75, 1.0),
                            marker=charts.Marker(threshold, f"threshold {threshold:.0%}", WARN_COLOUR))


def position_chart(rows: list[quality.AnnotatorQuality], per_row: int = 4) -> str:
    """Small multiples: per annotator, best (green) and worst (red) picks per screen position,
    relative to chance (dashed line = every position equally often)."""
    panels = [charts.ColumnPanel(
        title=row.username, subtitle=f"({counts.total} picks, n={counts.n})",
        values=[counts.best_ratios or [0.0] * counts.n, counts.worst_ratios or [0.0] * counts.n])
        for row in rows if row.position and row.position.picks and (counts := row.position.main)]
    # share x n is 1 for an annotator who ignores position; the axis reaches 2 at least, so small
    # deviations do not fill the panel.
    return charts.column_panels(
        panels, series=(("best", BEST_COLOUR), ("worst", WORST_COLOUR)), title="Screen position of picks",
        label="Screen position of best and worst picks per annotator", css_class="qc-chart",
        note="dashed: chance (share x n = 1); positions left to right", reference=1.0, floor=2.0,
        tip="position {column}: {series} x{value:.2f}", per_row=per_row)


# --- table cells ------------------------------------------------------------------------------------


def _p_value(value) -> str:
    if value is None:
        return "–"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def annotator_cells(row: quality.AnnotatorQuality, warn_p: float = 0.01) -> dict:
    """What the page's annotator table shows for one annotator, formatted, with warning flags."""
    gold, consistency, position, work = row.gold, row.consistency, row.position, row.activity
    cells = {
        "row": row,
        "gold": f"{_percent(gold.share)} ({gold.correct}/{gold.total})" if gold.total else "–",
        "gold_best": _percent(gold.best_share),
        "gold_worst": _percent(gold.worst_share),
        "gold_warn": row.below_threshold,
        "consistency": (f"{_percent(consistency.share)} ({consistency.agreed}/{consistency.compared})"
                        if consistency else "–"),
        "position_picks": position.picks if position else 0,
        "position_best": "–", "position_worst": "–", "position_warn": False,
        "fast": "–", "median_dwell": "–", "judgments": 0, "today": 0, "per_hour": "–", "per_day": "–",
    }
    if position and position.picks:
        cells["position_best"] = f"{_p_value(position.best_p)}, max dev. {position.best_max_deviation:.2f}"
        cells["position_worst"] = f"{_p_value(position.worst_p)}, max dev. {position.worst_max_deviation:.2f}"
        cells["position_warn"] = any(p is not None and p < warn_p for p in (position.best_p, position.worst_p))
    if work:
        cells.update(
            fast=f"{_percent(work.fast_share)} ({work.fast}/{work.judgments})",
            median_dwell="–" if work.median_dwell_ms is None else f"{work.median_dwell_ms / 1000:.1f} s",
            judgments=work.judgments, today=work.today,
            per_hour="–" if work.per_active_hour is None else f"{work.per_active_hour:.0f}",
            per_day="–" if work.per_active_day is None else f"{work.per_active_day:.0f}",
        )
    return cells


def _alpha(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def agreement_cells(row: quality.AgreementRow) -> dict:
    return {
        "row": row, "overall": row.task_id is None,
        "percent_best": _percent(row.best.percent), "percent_worst": _percent(row.worst.percent),
        "alpha_best": _alpha(row.best.alpha), "alpha_worst": _alpha(row.worst.alpha),
        "discarded": _percent(row.discarded_share),
    }


def batch_cells(progress: quality.BatchProgress) -> dict:
    return {
        "progress": progress, "batch": progress.batch,
        "tasks_share": _percent(progress.tasks_share), "judgments_share": _percent(progress.judgments_share),
        "bar": round(100 * (progress.judgments_share or 0.0), 1),
    }


# --- gold answers ----------------------------------------------------------------------------------


class GoldAnswersForm(forms.Form):
    """Expected best and worst per judged dimension, or "no clear difference"; stored by candidate
    index as AnnotationTask.gold_answers."""

    def __init__(self, *args, dimensions, candidates, initial_answers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dimensions = list(dimensions)
        choices = [(c.index, f"#{c.index}") for c in candidates]
        initial_answers = initial_answers or {}
        for dimension in self.dimensions:
            answer = initial_answers.get(dimension.slug) or {}
            for side in ("best", "worst"):
                self.fields[f"{dimension.slug}-{side}"] = forms.TypedChoiceField(
                    label=f"{dimension.name}: {side}", choices=choices, coerce=int, empty_value=None, required=False,
                    widget=forms.RadioSelect, initial=answer.get(side))
            self.fields[f"{dimension.slug}-discarded"] = forms.BooleanField(
                label="No clear difference", required=False, initial=answer.get("discarded") is True)

    def clean(self):
        cleaned = super().clean()
        answers = {}
        for dimension in self.dimensions:
            slug = dimension.slug
            best, worst = cleaned.get(f"{slug}-best"), cleaned.get(f"{slug}-worst")
            if cleaned.get(f"{slug}-discarded"):
                if best is not None or worst is not None:
                    self.add_error(
                        f"{slug}-discarded",
                        f"{dimension.name}: no clear difference cannot also name a best or a worst.",
                    )
                answers[slug] = {"discarded": True}
            elif best is None or worst is None:
                self.add_error(
                    f"{slug}-best", f"{dimension.name}: pick both the best and the worst, or tick no clear difference."
                )
            elif best == worst:
                self.add_error(
                    f"{slug}-best", f"{dimension.name}: the best and the worst must be different candidates."
                )
            else:
                answers[slug] = {"best": best, "worst": worst}
        self.answers = answers
        return cleaned

    def rows(self):
        """Per dimension, what the template lays out: the radio buttons per candidate and the box."""
        for dimension in self.dimensions:
            slug = dimension.slug
            fields = [self[f"{slug}-best"], self[f"{slug}-worst"], self[f"{slug}-discarded"]]
            yield {"dimension": dimension, "best": fields[0], "worst": fields[1], "discarded": fields[2],
                   "errors": [error for f in fields for error in f.errors]}

    def row_errors(self):
        """Each dimension's problems once (the page shows them as messages too)."""
        return [error for row in self.rows() for error in row["errors"]]


def gold_answers_html(task: AnnotationTask, dimensions) -> str:
    answers = task.gold_answers or {}
    if not answers:
        return "–"

    def text(answer):
        if not isinstance(answer, dict):
            return "not answered"
        if answer.get("discarded") is True:
            return "no clear difference"
        return f"best #{answer.get('best')}, worst #{answer.get('worst')}"

    rows = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>",
                            ((d.name, text(answers.get(d.slug))) for d in dimensions))
    return format_html('<table class="gold-answers">{}</table>', rows)


# --- annotation tasks: the list, gold marking, the quality-control page ----------------------------


@admin.register(AnnotationTask)
class AnnotationTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "input_link", "batch", "required_judgments", "judgments_done", "is_gold", "created_at"]
    list_filter = ["is_gold", ("candidate_set__batch", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["candidate_set__batch", "candidate_set__input__task"]
    search_fields = ["=id", "candidate_set__input__prompt", "candidate_set__input__original_name"]
    readonly_fields = [
        "candidate_set",
        "input_link",
        "required_judgments",
        "judgments_done",
        "is_gold",
        "gold_summary",
        "candidate_strip",
        "created_at",
    ]
    fields = readonly_fields
    change_list_template = "admin/annotation/annotationtask/change_list.html"
    change_form_template = "admin/annotation/annotationtask/change_form.html"

    def has_add_permission(self, request):
        return False  # tasks are made when a candidate set is finished

    def has_delete_permission(self, request, obj=None):
        return False  # deleting a task would delete its judgments

    @admin.display(description="Input")
    def input_link(self, task):
        item = task.candidate_set.input
        return format_html('<a href="{}">#{} {}</a>', reverse("admin:inputs_input_change", args=[item.pk]), item.pk,
                           item.task.name)

    @admin.display(description="Batch", ordering="candidate_set__batch")
    def batch(self, task):
        return task.candidate_set.batch

    @admin.display(description="Gold answers")
    def gold_summary(self, task):
        return gold_answers_html(task, task.candidate_set.input.judged_dimensions())

    @admin.display(description="Candidates")
    def candidate_strip(self, task):
        return format_html_join(
            " ",
            '<figure class="qc-candidate"><img src="{}" alt="candidate #{}" width="140">'
            "<figcaption>#{}</figcaption></figure>",
            (
                (reverse("candidate-file", args=[c.public_id, "thumbnail"]), c.index, c.index)
                for c in task.candidate_set.candidates.order_by("index")
            ),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("quality/", view(self.quality_view), name="annotation_annotationtask_quality"),
            path("quality/unpause/<int:user_id>/", view(self.unpause_view), name="annotation_annotationtask_unpause"),
            path("<int:pk>/gold/", view(self.gold_view), name="annotation_annotationtask_gold"),
            path("<int:pk>/gold/remove/", view(self.remove_gold_view), name="annotation_annotationtask_remove_gold"),
            *super().get_urls(),
        ]

    def _context(self, request, **extra):
        return {**self.admin_site.each_context(request), "opts": self.model._meta, **extra}

    # The quality-control page.

    def quality_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        period = request.GET.get("period", DEFAULT_PERIOD)
        if period not in PERIODS:
            period = DEFAULT_PERIOD
        days = PERIODS[period][1]
        since = timezone.now() - timedelta(days=days) if days else None
        settings = QualityControlSettings.current()
        rows = quality.annotator_report(since, settings)
        agreement = quality.agreement(since)
        batches = quality.batch_progress(
            GenerationBatch.objects.select_related("generator").order_by("-created_at")[:BATCHES_SHOWN])
        context = self._context(
            request,
            title="Quality control",
            settings=settings,
            threshold=_percent(settings.gold_accuracy_threshold),
            gold_rate=_percent(settings.gold_rate),
            repeat_share=_percent(settings.repeat_share),
            rows=[annotator_cells(row) for row in rows],
            agreement=[agreement_cells(row) for row in agreement],
            batches=[batch_cells(progress) for progress in batches],
            batches_shown=BATCHES_SHOWN,
            accuracy_chart=accuracy_chart(rows, settings.gold_accuracy_threshold, settings.gold_min_judgments),
            position_chart=position_chart(rows),
            periods=[(key, label) for key, (label, _) in PERIODS.items()],
            period=period,
            can_unpause=request.user.has_perm("annotation.change_annotatorstatus"),
            can_edit_settings=request.user.has_perm("annotation.change_qualitycontrolsettings"),
        )
        return TemplateResponse(request, "admin/annotation/quality.html", context)

    def unpause_view(self, request, user_id):
        if request.method != "POST" or not request.user.has_perm("annotation.change_annotatorstatus"):
            raise PermissionDenied
        status = get_object_or_404(AnnotatorStatus, user_id=user_id)
        if unpause(status, request.user):
            self.message_user(request, f"{status.user} may take tasks again.", messages.SUCCESS)
        return redirect(
            f"{reverse('admin:annotation_annotationtask_quality')}?period={request.POST.get('period', DEFAULT_PERIOD)}"
        )

    # Gold answers.

    def gold_view(self, request, pk):
        task = get_object_or_404(
            AnnotationTask.objects.select_related("candidate_set__input__task", "candidate_set__batch"), pk=pk
        )
        if not self.has_change_permission(request, task):
            raise PermissionDenied
        item = task.candidate_set.input
        dimensions = item.judged_dimensions()
        candidates = list(task.candidate_set.candidates.order_by("index"))
        form = GoldAnswersForm(request.POST or None, dimensions=dimensions, candidates=candidates,
                               initial_answers=task.gold_answers)
        if request.method == "POST":
            if form.is_valid():
                task.is_gold = True
                task.gold_answers = form.answers
                task.save(update_fields=["is_gold", "gold_answers"])
                self.message_user(request, f"{task} is a gold task with the expected answers saved.", messages.SUCCESS)
                return redirect("admin:annotation_annotationtask_change", task.pk)
            for error in [*form.non_field_errors(), *form.row_errors()]:
                self.message_user(request, error, messages.ERROR)
        regular_judgments = task.judgments.filter(kind=SlotKind.REGULAR).count()
        context = self._context(
            request,
            title=f"Gold answers for task #{task.pk}",
            task=task,
            input=item,
            candidates=candidates,
            form=form,
            regular_judgments=regular_judgments,
        )
        return TemplateResponse(request, "admin/annotation/annotationtask/gold.html", context)

    def remove_gold_view(self, request, pk):
        task = get_object_or_404(AnnotationTask, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, task):
            raise PermissionDenied
        if task.is_gold:
            # The answers stay, so marking it gold again starts from them.
            AnnotationTask.objects.filter(pk=task.pk).update(is_gold=False)
            self.message_user(
                request, f"{task} is no longer a gold task; its gold judgments stop counting.", messages.SUCCESS
            )
        return redirect("admin:annotation_annotationtask_change", task.pk)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_mark_gold": self.has_change_permission(request)}
        return super().changeform_view(request, object_id, form_url, extra_context)


# --- annotator statuses -------------------------------------------------------------------------


def unpause(status: AnnotatorStatus, by) -> bool:
    """Let a paused annotator take tasks again; the reason keeps who did it and why they were paused."""
    if not status.paused:
        return False
    status.paused = False
    status.reason = f"Unpaused by {by} on {timezone.localdate():%Y-%m-%d}. Before: {status.reason}".strip()
    status.save(update_fields=["paused", "reason", "changed_at"])
    return True


@admin.register(AnnotatorStatus)
class AnnotatorStatusAdmin(admin.ModelAdmin):
    list_display = ["user", "paused", "reason", "changed_at"]
    list_filter = ["paused"]
    search_fields = ["user__username", "reason"]
    raw_id_fields = ["user"]
    readonly_fields = ["changed_at"]
    actions = ["unpause_selected"]
    change_list_template = "admin/annotation/quality_status_change_list.html"

    @admin.action(description="Unpause the selected annotators", permissions=["change"])
    def unpause_selected(self, request, queryset):
        done = sum(unpause(status, request.user) for status in queryset.select_related("user"))
        self.message_user(request, f"{done} annotator(s) unpaused.", messages.SUCCESS)


# --- quality-control settings (one row) ----------------------------------------------------------


@admin.register(SimulatedAnnotator)
class SimulatedAnnotatorAdmin(admin.ModelAdmin):
    """Accounts judged by an oracle (made by `manage.py simulate_annotators`); read here, run there."""

    list_display = ["user", "oracle", "noise", "seed", "created_at"]
    list_filter = ["oracle"]
    readonly_fields = ["user", "oracle", "noise", "seed", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(QualityControlSettings)
class QualityControlSettingsAdmin(admin.ModelAdmin):
    fieldsets = [
        ("Mixing into the queue", {"fields": ["gold_rate", "repeat_share", "lease_minutes"]}),
        ("Flags and pausing", {"fields": ["fast_pick_ms", "gold_accuracy_threshold", "gold_min_judgments"]}),
    ]

    def has_add_permission(self, request):
        return False  # the one row is made on first use

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return redirect("admin:annotation_qualitycontrolsettings_change", QualityControlSettings.current().pk)
