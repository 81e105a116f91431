"""Admin for reward models: start a run, watch it (step, loss, ETA, a loss plot), resume or cancel
it, read a version's evaluation table and send doubtful sets back to annotation.

Permissions follow the models: ML engineers start and manage runs; platform admins view them."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from onereward.charts import line_chart

from .execution import resume
from .forms import RewardModelRunForm, SendBackForm
from .models import ReannotationRequest, RewardModelRun, RewardModelVersion
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
class RewardModelRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "dataset", "base_model", "status", "progress_figure", "loss", "created_by", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "base_model"]
    readonly_fields = ["name", "dataset", "base_model", "adapter_rank", "learning_rate", "batch_size",
                       "per_device_batch_size", "epochs", "max_steps", "warmup_steps", "gradient_checkpointing",
                       "mixed_precision", "seed", "save_every", "processes", "accelerate_config", "zero_shot_eval",
                       "eval_every", "extra", "status", "progress_figure", "loss", "samples_per_second", "eta", "loss_plot_view",
                       "version_link", "output_directory", "worker", "error", "created_by", "created_at",
                       "started_at", "finished_at"]
    fields = readonly_fields
    actions = ["cancel_runs", "resume_runs"]
    change_form_template = "admin/rewardmodel/rewardmodelrun/change_form.html"

    def has_change_permission(self, request, obj=None):
        # Runs are started, watched, cancelled and resumed; never edited.
        return False if request.method == "POST" and obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Progress")
    def progress_figure(self, run):
        return f"step {run.step} of {run.total_steps or '?'}"

    @admin.display(description="ETA")
    def eta(self, run):
        if run.eta_seconds is None or run.is_finished:
            return "–"
        minutes, seconds = divmod(int(run.eta_seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}"

    @admin.display(description="Loss")
    def loss_plot_view(self, run):
        return loss_plot(run.loss_history) or "–"

    @admin.display(description="Reward model version")
    def version_link(self, run):
        version = RewardModelVersion.objects.filter(run=run).first()
        if version is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:rewardmodel_rewardmodelversion_change", args=[version.pk]),
                           version)

    @admin.display(description="Directory on the GPU host")
    def output_directory(self, run):
        return str(run.output_dir)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/progress/", view(self.progress_view), name="rewardmodel_rewardmodelrun_progress"),
            path("<int:pk>/cancel/", view(self.cancel_view), name="rewardmodel_rewardmodelrun_cancel"),
            path("<int:pk>/resume/", view(self.resume_view), name="rewardmodel_rewardmodelrun_resume"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RewardModelRunForm(request.POST or None, initial={"dataset": request.GET.get("dataset")})
        if request.method == "POST" and form.is_valid():
            run = form.save(user=request.user)
            if run is not None:
                self.message_user(request, f"{run} is queued on the GPU workers.", messages.SUCCESS)
                return redirect("admin:rewardmodel_rewardmodelrun_change", run.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Train a reward model", "form": form, "multipart": False}
        return TemplateResponse(request, "admin/form_page.html", context)

    def _run(self, request, pk) -> RewardModelRun:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(RewardModelRun, pk=pk)

    def progress_view(self, request, pk):
        run = self._run(request, pk)
        return TemplateResponse(request, "admin/rewardmodel/rewardmodelrun/_progress.html",
                                {"run": run, "eta": self.eta(run), "plot": loss_plot(run.loss_history)})

    def cancel_view(self, request, pk):
        run = self._run(request, pk)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        if run.cancel():
            self.message_user(request, f"{run} is cancelled; its checkpoints are kept for a resume.", messages.SUCCESS)
        return redirect("admin:rewardmodel_rewardmodelrun_change", run.pk)

    def resume_view(self, request, pk):
        run = self._run(request, pk)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        if resume(run):
            self.message_user(request, f"{run} is queued again; it continues from its last checkpoint.", messages.SUCCESS)
        return redirect("admin:rewardmodel_rewardmodelrun_change", run.pk)

    @admin.action(description="Cancel the selected runs", permissions=["add"])
    def cancel_runs(self, request, queryset):
        self.message_user(request, f"{sum(run.cancel() for run in queryset)} run(s) cancelled.")

    @admin.action(description="Resume the selected runs from their last checkpoint", permissions=["add"])
    def resume_runs(self, request, queryset):
        self.message_user(request, f"{sum(resume(run) for run in queryset)} run(s) queued again.")


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "base_model", "template_version", "steps", "final_loss", "mean_accuracy", "created_at"]
    search_fields = ["name", "base_model"]
    readonly_fields = ["name", "run", "model_path", "base_model", "template_version", "steps", "final_loss",
                       "evaluation_view", "loss_plot_view", "accuracy_plot_view", "dataset_link", "requests_view", "created_at"]
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
        return [path("<int:pk>/send-back/", view(self.send_back_view), name="rewardmodel_rewardmodelversion_send_back"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "send_back_form": SendBackForm(),
                         "can_send_back": request.user.has_perm("rewardmodel.add_reannotationrequest")}
        return super().change_view(request, object_id, form_url, extra_context)

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
