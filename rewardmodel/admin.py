"""Admin for reward models: start a run, watch it (step, loss, ETA, a loss plot), resume or cancel
it, read a version's evaluation table and send doubtful sets back to annotation.

Permissions follow the models: ML engineers start and manage runs; platform admins view them."""
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from onereward.charts import line_chart
from onereward.jobs import progress_response
from onereward.runs import TrainingRunAdmin
from onereward.started_jobs import StartedJobAdmin

from .ablation import tables
from .bias_audit import group_plot, setting_plot, version_audit
from .core.bias_audit import DEFAULT_THRESHOLD
from .forms import RUN_FIELDS, JudgeAblationForm, RewardModelRunForm, SendBackForm
from .models import JudgeAblation, ReannotationRequest, RewardModelRun, RewardModelVersion
from .reannotation import send_back


def loss_plot(history: list) -> str:
    """Training loss against step."""
    return line_chart({"loss": history}, title="Training loss by step")


def accuracy_plot(validation: list) -> str:
    """Validation accuracy (%) against step: forward, reversed and their mean."""
    return line_chart({name: [(row[0], row[i]) for row in validation]
                       for i, name in ((1, "forward %"), (2, "reversed %"), (3, "mean %"))},
                      title="Validation accuracy by step")


def _percent(value) -> str:
    """A percentage as evaluation.py gives it (already x100), or a dash where there is none."""
    return "–" if value is None else f"{value:.1f}"


def evaluation_table(evaluation: dict, zero_shot: dict | None = None) -> str:
    """Accuracy (%) per task x dimension on the test split: forward, reversed, their mean, the
    base model's mean before training, the paper's figure, the human agreement ceiling and the
    judge's agreement with individual votes (where several annotators judged), with pair counts."""
    if evaluation.get("not_evaluated"):
        return format_html('<p class="errornote">{}</p>', evaluation["not_evaluated"])
    rows = evaluation.get("rows") or []
    if not rows:
        return "–"
    zero = {(row["task"], row["dimension"]): row for row in (zero_shot or {}).get("rows", [])}
    cells = []
    for row in rows:
        base = zero.get((row["task"], row["dimension"]), {})
        cells.append((row["task"], row["dimension"], row.get("pairs", 0), _percent(row.get("forward_accuracy")),
                      _percent(row.get("reversed_accuracy")), _percent(row.get("accuracy")),
                      _percent(base.get("accuracy")), _percent(row.get("paper_accuracy")),
                      _percent(row.get("human_ceiling")), _percent(row.get("vote_agreement"))))
    return format_html(
        '<table class="evaluation"><tr><th>Task</th><th>Dimension</th><th>Test pairs</th><th>Forward %</th>'
        "<th>Reversed %</th><th>Mean %</th><th>Zero-shot mean %</th><th>Paper %</th><th>Human ceiling %</th>"
        "<th>Agreement with votes %</th></tr>{}</table>",
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><strong>{}</strong></td>"
                             "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", cells))


@admin.register(RewardModelRun)
class RewardModelRunAdmin(TrainingRunAdmin):
    add_form = RewardModelRunForm
    add_title = "Train a reward model"
    list_display = ["__str__", "dataset", "base_model", "status", "progress_figure", "loss", "created_by",
                    "created_at"]
    search_fields = ["name", "base_model"]
    readonly_fields = [*RUN_FIELDS, "status", "progress_figure", "loss", "samples_per_second", "eta", "loss_plot_view",
                       "version_link", "output_directory", "worker", "error", "created_by", "created_at",
                       "started_at", "finished_at"]
    fields = readonly_fields

    def progress_figures(self, run) -> list[str]:
        return [f"{run.samples_per_second:.1f} samples/s"] if run.samples_per_second else []

    def progress_plot(self, run) -> str:
        return loss_plot(run.loss_history)

    @admin.display(description="Loss")
    def loss_plot_view(self, run):
        return loss_plot(run.loss_history) or "–"

    @admin.display(description="Reward model version")
    def version_link(self, run):
        version = RewardModelVersion.objects.filter(run=run).first()
        if version is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:rewardmodel_rewardmodelversion_change",
                                                          args=[version.pk]), version)


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "base_model", "template_version", "steps", "final_loss", "mean_accuracy",
                    "created_at"]
    search_fields = ["name", "base_model"]
    readonly_fields = ["name", "run", "model_path", "base_model", "template_version", "steps", "final_loss",
                       "evaluation_view", "loss_plot_view", "accuracy_plot_view", "dataset_link", "requests_view",
                       "bias_audit_link", "ablation_link", "created_at"]
    fields = readonly_fields
    change_form_template = "admin/rewardmodel/rewardmodelversion/change_form.html"

    def has_add_permission(self, request):
        return False  # versions are registered by finished runs

    def has_change_permission(self, request, obj=None):
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Mean accuracy (all)")
    def mean_accuracy(self, version):
        overall = next((row for row in (version.evaluation or {}).get("rows", []) if row["task"] == "all"), {})
        return _percent(overall.get("accuracy"))

    @admin.display(description="Evaluation on the test split")
    def evaluation_view(self, version):
        return evaluation_table(version.evaluation, version.zero_shot)

    @admin.display(description="Training loss")
    def loss_plot_view(self, version):
        return loss_plot(version.run.loss_history) or "–"

    @admin.display(description="Validation accuracy")
    def accuracy_plot_view(self, version):
        return accuracy_plot(version.run.validation_history) or "– (set “eval every” on the run)"

    @admin.display(description="Trained on")
    def dataset_link(self, version):
        dataset = version.run.dataset
        return format_html('<a href="{}">{}</a> (content hash {})',
                           reverse("admin:preferences_preferencedataset_change", args=[dataset.pk]), dataset,
                           dataset.content_hash[:12])

    @admin.display(description="Bias audit")
    def bias_audit_link(self, version):
        return format_html('<a href="{}">What this judge rewards, by task, tag and generation setting</a>',
                           reverse("admin:rewardmodel_rewardmodelversion_bias_audit", args=[version.pk]))

    @admin.display(description="Ablations")
    def ablation_link(self, version):
        return format_html('<a href="{}?versions={}">Score this judge under other query variants</a>',
                           reverse("admin:rewardmodel_judgeablation_add"), version.pk)

    @admin.display(description="Sent back to annotation")
    def requests_view(self, version):
        requests = version.reannotation_requests.all()
        if not requests:
            return "–"
        return format_html_join("", "<div>{} — {} tasks, {} more judgment(s) each ({})</div>", (
            (r.get_reason_display(), r.tasks.count(), r.extra_judgments, r.created_at.strftime("%Y-%m-%d %H:%M"))
            for r in requests))

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/send-back/", view(self.send_back_view),
                     name="rewardmodel_rewardmodelversion_send_back"),
                path("<int:pk>/bias-audit/", view(self.bias_audit_view),
                     name="rewardmodel_rewardmodelversion_bias_audit"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "send_back_form": SendBackForm(),
                         "can_send_back": request.user.has_perm("rewardmodel.add_reannotationrequest")}
        return super().change_view(request, object_id, form_url, extra_context)

    def bias_audit_view(self, request, pk):
        version = get_object_or_404(RewardModelVersion, pk=pk)
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": version,
                   "title": f"Bias audit of {version}"}
        try:
            threshold = float(request.GET.get("threshold", DEFAULT_THRESHOLD))
            result = version_audit(version, threshold)
        except (ValueError, ValidationError) as exc:
            context["error"] = "; ".join(getattr(exc, "messages", [str(exc)]))
        else:
            context.update(result=result, setting_plot=setting_plot(result), group_plot=group_plot(result))
        return TemplateResponse(request, "admin/rewardmodel/rewardmodelversion/bias_audit.html", context)

    def send_back_view(self, request, pk):
        version = get_object_or_404(RewardModelVersion, pk=pk)
        if request.method != "POST" or not request.user.has_perm("rewardmodel.add_reannotationrequest"):
            raise PermissionDenied
        form = SendBackForm(request.POST)
        if form.is_valid():
            try:
                sent = send_back(version, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, f"{sent.tasks.count()} candidate set(s) are back in the annotation pool "
                                           f"for {sent.extra_judgments} more judgment(s) each.", messages.SUCCESS)
        else:
            self.message_user(request, f"Not sent: {form.errors.as_text()}", messages.ERROR)
        return redirect("admin:rewardmodel_rewardmodelversion_change", version.pk)


@admin.register(ReannotationRequest)
class ReannotationRequestAdmin(admin.ModelAdmin):
    list_display = ["__str__", "version", "reason", "extra_judgments", "created_by", "created_at"]
    readonly_fields = ["version", "reason", "extra_judgments", "tasks", "created_by", "created_at"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False


@admin.register(JudgeAblation)
class JudgeAblationAdmin(StartedJobAdmin):
    """Start an ablation (the add form: versions and variants), watch it, read its side-by-side
    tables. Ablations are never edited: the change page shows them."""

    add_form = JudgeAblationForm
    list_display = ["__str__", "dataset", "variant_list", "status", "progress_figure", "created_by", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["name", "status", "progress_figure", "judge_list", "dataset", "variant_list", "batch_size",
                       "scores_directory", "worker", "error", "created_by", "created_at", "started_at", "finished_at"]
    fields = readonly_fields
    actions = ["cancel_ablations"]
    change_form_template = "admin/rewardmodel/judgeablation/change_form.html"
    progress_template = "admin/rewardmodel/judgeablation/_progress.html"

    def add_fields(self) -> list[str]:
        return list(self.add_form.field_order)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"{obj} is queued on the GPU workers.", messages.SUCCESS)
        return redirect("admin:rewardmodel_judgeablation_change", obj.pk)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if add:
            context["title"] = "Ablate judges: score them under query variants"
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        ablation = self.get_object(request, unquote(object_id))
        if ablation is not None:
            extra_context = {**(extra_context or {}), "ablation": ablation,
                             "progress_template": self.progress_template}
            if ablation.results:
                extra_context["tables"] = tables(ablation.results)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Progress")
    def progress_figure(self, ablation):
        return f"{ablation.progress_done}/{ablation.progress_total} pairs scored"

    @admin.display(description="Judges")
    def judge_list(self, ablation):
        versions = [(reverse("admin:rewardmodel_rewardmodelversion_change", args=[v.pk]), v.name,
                     v.template_version) for v in ablation.versions.order_by("pk")]
        shown = format_html_join(", ", '<a href="{}">{}</a> (trained on v{})', versions)
        if ablation.base_model:
            shown = format_html("{}{}zero-shot {}", shown, ", " if versions else "", ablation.base_model)
        return shown or "–"

    @admin.display(description="Variants")
    def variant_list(self, ablation):
        return ", ".join(ablation.variants) or "–"

    @admin.display(description="Scores on the GPU host")
    def scores_directory(self, ablation):
        return str(ablation.output_dir)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/progress/", view(self.progress_view), name="rewardmodel_judgeablation_progress"),
                *super().get_urls()]

    def progress_view(self, request, pk):
        """The job's status alone, polled by the change page (htmx) until it ends."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ablation = get_object_or_404(JudgeAblation, pk=pk)
        return progress_response(request, self.progress_template, {"ablation": ablation}, ablation)

    @admin.action(description="Cancel the selected ablations", permissions=["add"])
    def cancel_ablations(self, request, queryset):
        self.message_user(request, f"{sum(ablation.cancel() for ablation in queryset)} ablation(s) cancelled.")
