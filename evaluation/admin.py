"""Admin for human evaluation studies: the add form (two or more batches with their labels, built
by evaluation.studies.check_study), the study page with its arms and progress, and the report
(usability per arm x task, Good/Same/Bad per arm pair x task x dimension, with Wilson intervals).

Permissions follow the model's, like the quality-control pages: platform admins create and edit
studies, ML engineers view them and their reports, annotators never reach the admin.
"""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from generation.models import GenerationBatch

from .leaderboard_admin import leaderboard_view
from .models import Study, StudyArm
from .studies import check_study, save_study, study_report

ARM_ROWS = 6
DEFAULT_LABELS = "ABCDEF"


# --- the add form ---------------------------------------------------------------------------------


class BatchChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, batch):
        purpose = "evaluation" if batch.for_annotation is False else "annotation"
        return (
            f"#{batch.pk} {batch.name or 'batch'} · {batch.generator.name} · N={batch.candidates_per_input} · "
            f"{purpose} · {batch.get_status_display().lower()} · {batch.progress_done}/{batch.progress_total} done"
        )


class StudyCreateForm(forms.Form):
    """A study's name, judgments per item and up to ARM_ROWS arms (a batch and a label each); the
    rules are check_study's, so the API and scripts share them."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    judgments_per_item = forms.IntegerField(initial=3, min_value=1, label="Judgments per item",
                                            help_text="Different annotators per input (the paper: several per input).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        batches = GenerationBatch.objects.select_related("generator").order_by("-created_at")
        for row in range(ARM_ROWS):
            self.fields[f"batch_{row}"] = BatchChoiceField(
                queryset=batches,
                required=False,
                label=f"Arm {row + 1}: batch",
                help_text="Evaluation batches over the same held-out inputs; each arm shows its candidate 0."
                if row == 0
                else "",
            )
            self.fields[f"label_{row}"] = forms.CharField(
                max_length=StudyArm._meta.get_field("label").max_length, required=False, label=f"Arm {row + 1}: label",
                help_text=f'How the report names the arm; empty = "{DEFAULT_LABELS[row]}".')

    @property
    def fields_shown_apart(self) -> list[str]:
        # The arms are a table of their own below the other fields (admin/evaluation/study_add.html).
        return [name for row in range(ARM_ROWS) for name in (f"batch_{row}", f"label_{row}")]

    def arm_rows(self):
        for row in range(ARM_ROWS):
            yield {"number": row + 1, "batch": self[f"batch_{row}"], "label": self[f"label_{row}"]}

    def arms(self) -> list[tuple[GenerationBatch, str]]:
        data = self.cleaned_data
        return [(data[f"batch_{row}"], (data.get(f"label_{row}") or "").strip() or DEFAULT_LABELS[row])
                for row in range(ARM_ROWS) if data.get(f"batch_{row}")]

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                self.plan = check_study(data["name"], self.arms(), data["judgments_per_item"])
            except ValidationError as error:
                self._add_problems(error)
        return data

    def save(self, user) -> Study | None:
        """Create the checked study, or put the problem on the form and return None."""
        try:
            return save_study(self.plan, user=user, description=self.cleaned_data.get("description", ""))
        except ValidationError as error:
            self._add_problems(error)
            return None

    def _add_problems(self, error: ValidationError) -> None:
        for field, problems in getattr(error, "message_dict", {None: error.messages}).items():
            for problem in problems:
                self.add_error(field if field in self.fields else None, problem)


# --- report cells -----------------------------------------------------------------------------------


def _percent(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def _interval(low, high) -> str:
    return "" if low is None else f"[{low:.0%}, {high:.0%}]"


def usability_cells(row: dict) -> dict:
    return {
        **row,
        "cells": [
            {**cell, "rate_text": _percent(cell["rate"]), "ci_text": _interval(cell["low"], cell["high"])}
            for cell in row["arms"]
        ],
    }


def gsb_cells(row: dict) -> dict:
    cells = {**row, "net_text": "–" if row["net"] is None else f"{row['net']:+.2f}"}
    for side in ("good", "same", "bad"):
        cells[f"{side}_text"] = _percent(row[f"{side}_share"])
        cells[f"{side}_ci"] = _interval(row[f"{side}_low"], row[f"{side}_high"])
    return cells


# --- the admin ------------------------------------------------------------------------------------


class StudyArmInline(admin.TabularInline):
    model = StudyArm
    fields = ["label", "batch_link", "generator", "order"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    @admin.display(description="Batch")
    def batch_link(self, arm):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:generation_generationbatch_change", args=[arm.batch_id]), arm.batch
        )

    @admin.display(description="Generator")
    def generator(self, arm):
        return arm.batch.generator


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "arm_labels", "item_count", "progress", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "description"]
    fields = [
        "name",
        "description",
        "active",
        "judgments_per_item",
        "progress",
        "report_link",
        "created_by",
        "created_at",
    ]
    readonly_fields = ["judgments_per_item", "progress", "report_link", "created_by", "created_at"]
    inlines = [StudyArmInline]
    change_form_template = "admin/evaluation/study_change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            item_total=Count("items", distinct=True),
            judgments_total=Count("items__judgments", distinct=True),
            complete_total=Count("items", distinct=True, filter=Q(items__judgments_done__gte=F("judgments_per_item"))),
        ).prefetch_related("arms")

    @admin.display(description="Arms")
    def arm_labels(self, study):
        return " vs ".join(arm.label for arm in study.arms.all())

    @admin.display(description="Items", ordering="item_total")
    def item_count(self, study):
        return study.item_total

    @admin.display(description="Progress")
    def progress(self, study):
        items, judgments, complete = study.item_total, study.judgments_total, study.complete_total
        wanted = items * study.judgments_per_item
        share = judgments / wanted if wanted else 0.0
        return format_html(
            '<span class="study-progress" data-judgments="{}" data-wanted="{}">'
            '<span class="study-bar"><span style="width:{}%">'
            "</span></span> {} of {} judgments ({}); {} of {} items complete</span>",
            judgments,
            wanted,
            round(100 * share, 1),
            judgments,
            wanted,
            _percent(share),
            complete,
            items,
        )

    @admin.display(description="Report")
    def report_link(self, study):
        if study.pk is None:
            return "–"
        return format_html('<a href="{}">Usability and Good/Same/Bad report</a>',
                           reverse("admin:evaluation_study_report", args=[study.pk]))

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/report/", view(self.report_view), name="evaluation_study_report"),
            path("leaderboard/", view(self.leaderboard_view), name="evaluation_study_leaderboard"),
            *super().get_urls(),
        ]

    def leaderboard_view(self, request):
        return leaderboard_view(request, self)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StudyCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            study = form.save(user=request.user)
            if study is not None:
                items = study.items.count()
                self.message_user(request, f"Study {study} is open: {items} item(s) x {study.judgments_per_item} "
                                           f"judgment(s), {study.arms.count()} arms.", messages.SUCCESS)
                return redirect("admin:evaluation_study_change", study.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Create a study",
                   "form": form}
        return TemplateResponse(request, "admin/evaluation/study_add.html", context)

    def report_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        study = get_object_or_404(Study, pk=pk)
        report = study_report(study)
        gsb = [
            {
                **pair,
                "tasks": [{**block, "rows": [gsb_cells(row) for row in block["rows"]]} for block in pair["tasks"]],
            }
            for pair in report["gsb"]
        ]
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": study,
            "title": f"Report: {study}", "study": study, "report": report,
            "usability": [usability_cells(row) for row in report["usability"]], "gsb": gsb,
            "arms": study.arms.select_related("batch__generator"),
        }
        return TemplateResponse(request, "admin/evaluation/study_report.html", context)
