"""Admin for RL: start a run, watch it (step, loss, reward curves per task x dimension, ETA),
cancel or resume it; a checkpoint's page links its generator, shows the judge's win rates against
the base, starts a human study against the base in one click, and prepares and downloads the
policy as a LoRA file or a merged transformer (rl/exports.py)."""
from collections import defaultdict

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from inputs.models import Input
from onereward.charts import line_chart
from onereward.jobs import JobStatus
from onereward.runs import TrainingRunAdmin

from .execution import start_human_study
from .exports import download_response, export_states, request_export
from .forms import RUN_FIELDS, HumanStudyForm, RLRunForm
from .models import ExportFormat, PolicyCheckpoint, RLRun
from .reward_hacking import alarm


def reward_curves(history: list) -> str:
    """Reward (P(Yes) of the policy against the reference) per task x dimension by step: the
    paper's Figure 6."""
    series = defaultdict(list)
    for step, rewards in history:
        for name, value in sorted(rewards.items()):
            series[name].append((step, value))
    return line_chart(dict(series), title="Reward per task and dimension by step")


def training_curves(history: list) -> str:
    """Loss, hinge share (share of sample x dimension still under lambda) and gradient norm by step."""
    series = {name: [(row[0], row[i]) for row in history if row[i] is not None]
              for i, name in ((1, "loss"), (2, "hinge share"), (3, "gradient norm"))}
    return line_chart(series, title="Loss, hinge share and gradient norm by step")


def win_rate_table(evaluation: dict) -> str:
    rows = evaluation.get("rows") or []
    if not rows:
        return "–"

    def percent(share):
        return "–" if share is None else f"{100 * share:.1f}"

    return format_html(
        "<table><tr><th>Task</th><th>Dimension</th><th>Comparisons</th><th>Policy first %</th>"
        "<th>Policy second %</th><th>Win rate %</th></tr>{}</table>",
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                             "<td><strong>{}</strong></td></tr>",
                         ((r.get("task"), r.get("dimension"), r.get("comparisons", r.get("pairs", 0)),
                           percent(r.get("win_rate_forward")), percent(r.get("win_rate_reversed")),
                           percent(r.get("win_rate"))) for r in rows)))


def reward_hacking_table(check: dict) -> str:
    def percent(share):
        return "–" if share is None else f"{100 * share:.1f}"

    def human(row):
        if not row["human_judgments"]:
            return "–"
        return f"{percent(row['human_win_rate'])} ({percent(row['human_low'])}–{percent(row['human_high'])})"

    rows = format_html_join("", '<tr data-flagged="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
                                "<td>{}</td><td>{}</td></tr>", (
        ("yes" if row["flagged"] else "no", row["task"], row["dimension"], percent(row["judge_win_rate"]),
         human(row), row["human_judgments"], "–" if row["gap"] is None else f"{100 * row['gap']:+.1f}",
         "FLAGGED" if row["flagged"] else "") for row in check["rows"]))
    return format_html(
        '<p class="reward-hacking" data-state="{}"><strong>{}</strong> (threshold {} points; {})</p>'
        "<table><tr><th>Task</th><th>Dimension</th><th>Judge win %</th><th>Human win % (95 %)</th>"
        "<th>Human judgments</th><th>Gap</th><th></th></tr>{}</table>",
        check["state"], check["state"], f"{100 * check['threshold']:.0f}", check["definition"], rows)


@admin.register(RLRun)
class RLRunAdmin(TrainingRunAdmin):
    add_form = RLRunForm
    add_title = "Start an RL run"
    list_display = ["__str__", "base_generator", "reward_model", "algorithm", "status", "progress_figure",
                    "reward_mean", "created_at"]
    list_filter = ["status", "algorithm"]
    readonly_fields = [*RUN_FIELDS, "status", "progress_figure", "loss", "reward_mean", "curves",
                       "training_curves_view", "checkpoint_link", "output_directory", "worker", "error", "created_by",
                       "created_at", "started_at", "finished_at"]
    fields = readonly_fields

    def progress_figures(self, run) -> list[str]:
        return [] if run.reward_mean is None else [f"mean reward {run.reward_mean:.3f}"]

    def progress_plot(self, run) -> str:
        return reward_curves(run.reward_history)

    @admin.display(description="Reward curves")
    def curves(self, run):
        return reward_curves(run.reward_history) or "–"

    @admin.display(description="Loss, hinge share, gradient norm")
    def training_curves_view(self, run):
        return training_curves(run.training_history) or "–"

    @admin.display(description="Policy checkpoint")
    def checkpoint_link(self, run):
        checkpoint = PolicyCheckpoint.objects.filter(run=run).first()
        if checkpoint is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:rl_policycheckpoint_change", args=[checkpoint.pk]),
                           checkpoint)


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(admin.ModelAdmin):
    list_display = ["__str__", "run", "steps", "final_reward", "study", "created_at"]
    readonly_fields = ["generator_link", "run", "path", "steps", "final_reward", "win_rates", "study_status",
                       "reward_hacking", "created_at"]
    fields = readonly_fields
    change_form_template = "admin/rl/policycheckpoint/change_form.html"

    def has_add_permission(self, request):
        return False  # registered by finished runs

    def has_change_permission(self, request, obj=None):
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Generator")
    def generator_link(self, checkpoint):
        return format_html('<a href="{}">{}</a> (use it in a generation batch)',
                           reverse("admin:generation_generator_change", args=[checkpoint.generator_id]),
                           checkpoint.generator)

    @admin.display(description="The judge's win rate against the base (held-out inputs)")
    def win_rates(self, checkpoint):
        return win_rate_table(checkpoint.evaluation)

    @admin.display(description="Human study against the base")
    def study_status(self, checkpoint):
        if checkpoint.study_id:
            return format_html('<a href="{}">{}</a> · <a href="{}">report</a>',
                               reverse("admin:evaluation_study_change", args=[checkpoint.study_id]), checkpoint.study,
                               reverse("admin:evaluation_study_report", args=[checkpoint.study_id]))
        batches = list(checkpoint.study_batches.all())
        if not batches:
            return "not started"
        return format_html_join(", ", '<a href="{}">{}</a> ({})', (
            (reverse("admin:generation_generationbatch_change", args=[b.pk]), b, b.get_status_display())
            for b in batches))

    @admin.display(description="Reward-hacking check (judge vs humans)")
    def reward_hacking(self, checkpoint):
        return reward_hacking_table(alarm(checkpoint))

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/human-study/", view(self.human_study_view), name="rl_policycheckpoint_human_study"),
                path("<int:pk>/export/", view(self.export_view), name="rl_policycheckpoint_export"),
                path("<int:pk>/export/<str:format>/download/", view(self.download_view),
                     name="rl_policycheckpoint_download"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        checkpoint = get_object_or_404(PolicyCheckpoint, pk=object_id)
        if request.method == "GET":
            check = alarm(checkpoint)
            if check["flagged"]:
                messages.warning(request, f"Possible reward hacking: the judge prefers this policy to the base far "
                                          f"more than people do on {', '.join(check['flagged'])}.")
        initial = {"tags": list(checkpoint.run.eval_tags.all())}
        extra_context = {**(extra_context or {}), "study_form": HumanStudyForm(initial=initial),
                         "can_start_study": request.user.has_perm("evaluation.add_study")
                         and request.user.has_perm("generation.add_generationbatch")
                         and not checkpoint.study_batches.exists(),
                         "exports": self.export_rows(checkpoint),
                         "can_export": request.user.has_perm("rl.add_policyexport")}
        return super().change_view(request, object_id, form_url, extra_context)

    def export_rows(self, checkpoint) -> list[dict]:
        states = export_states(checkpoint)
        return [{"format": format, "label": label, **states[format],
                 "download_url": reverse("admin:rl_policycheckpoint_download", args=[checkpoint.pk, format])}
                for format, label in ExportFormat.choices]

    def export_view(self, request, pk):
        checkpoint = get_object_or_404(PolicyCheckpoint, pk=pk)
        if request.method != "POST" or not request.user.has_perm("rl.add_policyexport"):
            raise PermissionDenied
        format = request.POST.get("format", "")
        try:
            export = request_export(checkpoint, format, user=request.user)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
        else:
            if export.status == JobStatus.DONE:
                self.message_user(request, f"The {export.get_format_display()} is ready to download.", messages.INFO)
            else:
                self.message_user(request, f"The {export.get_format_display()} is being prepared on a GPU worker; "
                                           f"reload this page to download it when it is done.", messages.SUCCESS)
        return redirect("admin:rl_policycheckpoint_change", checkpoint.pk)

    def download_view(self, request, pk, format):
        checkpoint = get_object_or_404(PolicyCheckpoint, pk=pk)
        if not self.has_view_permission(request, checkpoint):
            raise PermissionDenied
        return download_response(checkpoint, format)

    def human_study_view(self, request, pk):
        checkpoint = get_object_or_404(PolicyCheckpoint, pk=pk)
        if request.method != "POST" or not (request.user.has_perm("evaluation.add_study")
                                            and request.user.has_perm("generation.add_generationbatch")):
            raise PermissionDenied
        form = HumanStudyForm(request.POST)
        if form.is_valid():
            inputs = Input.objects.filter(tags__in=form.cleaned_data["tags"]).distinct()
            try:
                start_human_study(checkpoint, inputs=inputs, user=request.user,
                                  judgments_per_item=form.cleaned_data["judgments_per_item"])
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, "Evaluation batches of the policy and its base are queued; the study "
                                           "opens to annotators when both are done.", messages.SUCCESS)
        else:
            self.message_user(request, f"Not started: {form.errors.as_text()}", messages.ERROR)
        return redirect("admin:rl_policycheckpoint_change", checkpoint.pk)
