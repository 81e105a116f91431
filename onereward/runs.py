"""The one lifecycle of a training run (a reward model run, an RL run): the row, its start, its
training in a child process on a GPU worker, and the admin, API and command line that start,
follow, cancel and resume it. Each app subclasses these with what is its own: the trainer's
config, the inputs it prepares, what a finished run registers, its curves.

The trainer is an ML-core module started as `python -m MODULE --config FILE` (or under
`accelerate launch` for several processes) in a new session, so that a crash, an out-of-memory
kill or a cancel ends the child and never the worker. It rewrites `progress.json` at every log
step and writes `result.json` when it ends well; the worker follows the first onto the row, stops
the child when the run is cancelled, and registers what the second describes.
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from mlcore.config import ConfigError
from mlcore.rundir import RunDirectory
from onereward.bounds import SEED_RANGE
from onereward.jobs import BackgroundJob, JobStatus, follow, progress_response
from onereward.permissions import ModelPermissionsWithView
from onereward.started_jobs import StartedJobAdmin, StartedJobViewSet

POLL_SECONDS = 2.0
LOG_TAIL = 4000
HISTORY_POINTS = 500  # points kept for a plot; older ones are thinned
RESUMABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


def config_default(config_class, name: str):
    """The default of field `name` of a trainer's config dataclass: model fields and command
    options take their defaults from it, so each default is written once."""
    found = {f.name: f for f in dataclasses.fields(config_class)}[name]
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


# --- the row -------------------------------------------------------------------------------------


class TrainingRun(BackgroundJob):
    """What every training run keeps: its settings and the live progress copied from the trainer.

    A subclass names its trainer (`trainer_module`, `config_class`, `accelerate_dir`) and defines
    `row_config()`, the settings fields `processes`, `accelerate_config`, `extra` and
    `max_steps`, and `platform_errors()` for the rules the trainer's config cannot know."""

    name = models.CharField(max_length=200, blank=True)
    # Live progress, copied from the trainer's progress file.
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Renewed by the worker training the run while it runs.")

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    trainer_module: str = ""
    config_class = None
    accelerate_dir: Path | None = None
    runs_folder: str = ""  # under ONEREWARD_TRAINING_DIR
    # A config field whose row field has another name (or holds it in another shape).
    config_field_names: dict[str, str] = {}

    @property
    def output_dir(self) -> Path:
        return settings.ONEREWARD_TRAINING_DIR / self.runs_folder / f"run-{self.pk}"

    @property
    def planned_steps(self) -> int | None:
        return self.total_steps or self.max_steps

    def row_config(self) -> dict:
        """The trainer's configuration as the row's fields set it: a JSON object of `config_class`
        fields, before the extra options."""
        raise NotImplementedError

    def training_config(self) -> dict:
        """The trainer's configuration: the row's, plus the extra options for the fields the row
        does not set (clean() refuses the others, so what the page shows is what runs)."""
        config = self.row_config()
        return {**self.extra, **config} if isinstance(self.extra, dict) else config

    def platform_errors(self) -> dict:
        """{field: message} for rules about the records (a dataset is built, a generator's backend)."""
        return {}

    def claim(self, worker: str) -> bool:
        """Take the run for `worker` and mark it running, unless it has ended (done or cancelled) or
        another worker's heartbeat on it is fresh (a second delivery of a run being trained)."""
        with transaction.atomic():
            row = type(self).objects.select_for_update().get(pk=self.pk)
            if row.status in (JobStatus.CANCELLED, JobStatus.DONE):
                return False
            fresh = row.heartbeat_at and timezone.now() - row.heartbeat_at < run_lease()
            if row.status == JobStatus.RUNNING and fresh:
                return False
            self.mark_running()
            self._update(worker=worker, heartbeat_at=timezone.now())
        return True

    def beat(self) -> None:
        type(self).objects.filter(pk=self.pk, worker=self.worker, status=JobStatus.RUNNING).update(
            heartbeat_at=timezone.now())

    def clean(self):
        errors = defaultdict(list)
        for name, message in self.platform_errors().items():
            errors[name].append(message)
        if not isinstance(self.extra, dict):
            errors["extra"].append(f"a JSON object of {self.config_class.__name__} fields")
        else:
            errors["extra"].extend(self.extra_overlaps())
        # A value the field's own check refuses (a required one left empty) is reported once, by it.
        refused = {f.name for f in self._meta.concrete_fields if not f.null and getattr(self, f.attname) is None}
        for name, message in self.config_errors():
            if name not in refused and message not in errors[name]:
                errors[name].append(message)
        if any(errors.values()):
            raise ValidationError({name: found for name, found in errors.items() if found})

    def extra_overlaps(self) -> list[str]:
        """A message for each extra option that a field of the row (or the platform) sets: two
        places for one setting would let the form show one value while another runs."""
        try:
            owned = self.row_config()
        except ObjectDoesNotExist:
            return []  # a required record is missing: its field says so
        row_fields = {f.name: f for f in self._meta.concrete_fields}
        messages = []
        for key in sorted(set(self.extra) & set(owned)):
            field = row_fields.get(self.config_field_names.get(key, key))
            where = f'its own field, "{field.verbose_name}"' if field is not None else "the platform"
            messages.append(f"{key} is set by {where}; it cannot be an extra option")
        return messages

    def config_errors(self) -> list[tuple[str, str]]:
        """(row field, message) for each problem the trainer's config finds in this row: its own
        rules, run here so that a bad value is refused where it is typed, not in a GPU child."""
        try:
            values = self.training_config()
        except ObjectDoesNotExist:
            return []  # a required record is missing: its field says so
        try:
            self.config_class.from_dict(values)
        except ConfigError as error:
            return [self.row_error(name, message) for name, message in error.errors]
        return []

    def row_error(self, config_field: str | None, message: str) -> tuple[str, str]:
        """Where a config error shows: on the extra options when they set that field, else on the
        row field that feeds it, else above the form."""
        top = (config_field or "").split(".")[0]
        if isinstance(self.extra, dict) and top in self.extra:
            return "extra", f"{config_field}: {message}"
        name = self.config_field_names.get(top, top)
        if name and name in {f.name for f in self._meta.get_fields()}:
            return name, message
        return NON_FIELD_ERRORS, f"{config_field}: {message}" if config_field else message

    def launch(self, relations: dict | None = None, queue: bool = True) -> None:
        """Save a validated run with its many-to-many `relations` and queue it on the GPU workers."""
        with transaction.atomic():
            self.save()
            for name, values in (relations or {}).items():
                getattr(self, name).set(values)
            if queue:
                self.enqueue()

    @property
    def last_checkpoint_step(self) -> int | None:
        """The step of the checkpoint a resume continues from; None when there is none yet."""
        latest = RunDirectory(self.output_dir).latest_checkpoint() if self.pk else None
        return RunDirectory.read_state(latest).get("step") if latest is not None else None

    @property
    def can_resume(self) -> bool:
        return self.status in RESUMABLE

    def resume(self) -> bool:
        """Queue a failed or cancelled run again: the trainer continues from its last checkpoint, or
        starts from the beginning when it saved none."""
        rows = type(self).objects.filter(pk=self.pk, status__in=RESUMABLE)
        resumed = bool(rows.update(status=JobStatus.QUEUED, finished_at=None, error=""))
        self.refresh_from_db()
        if resumed:
            self.enqueue()
        return resumed

    def fail(self, error: str) -> bool:
        """Mark the run failed unless it was cancelled meanwhile (a cancel is never overwritten)."""
        rows = type(self).objects.filter(pk=self.pk).exclude(status=JobStatus.CANCELLED)
        failed = bool(rows.update(status=JobStatus.FAILED, error=error, finished_at=timezone.now()))
        self.refresh_from_db()
        return failed

    def trainer_command(self, config_path: Path) -> list[str]:
        accelerate_config = self.accelerate_dir / f"{self.accelerate_config}.yaml" if self.accelerate_config else None
        return trainer_command(self.trainer_module, config_path, self.processes, accelerate_config)

    def progress_fields(self, progress: dict) -> dict:
        """The row fields a progress file sets; subclasses add their own figures and curves."""
        return {"step": progress.get("step") or 0, "total_steps": progress.get("total_steps") or self.total_steps,
                "loss": progress.get("loss"), "eta_seconds": progress.get("eta_seconds")}

    def copy_progress(self, progress: dict) -> None:
        fields = self.progress_fields(progress)
        self._update(progress_done=fields["step"], progress_total=fields["total_steps"], **fields)


def split_relations(model, fields: dict) -> tuple[dict, dict]:
    """(column fields, many-to-many fields) of `fields`: the second are set once the row is saved."""
    names = {f.name for f in model._meta.many_to_many}
    return ({k: v for k, v in fields.items() if k not in names}, {k: v for k, v in fields.items() if k in names})


def start(model, *, user=None, queue: bool = True, **fields) -> TrainingRun:
    """Validate, save and (unless `queue` is false) queue a run; raises ValidationError naming what is wrong."""
    columns, relations = split_relations(model, fields)
    run = model(created_by=user, **columns)
    run.full_clean(exclude=["created_by"])
    run.launch(relations, queue=queue)
    return run


# --- the child process ---------------------------------------------------------------------------


@dataclass
class TrainerOutcome:
    cancelled: bool
    returncode: int | None
    result: dict | None
    log_tail: str


def trainer_command(module: str, config_path: Path, processes: int = 1,
                    accelerate_config: Path | None = None) -> list[str]:
    if processes <= 1:
        return [sys.executable, "-m", module, "--config", str(config_path)]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if accelerate_config is not None:
        command += ["--config_file", str(accelerate_config)]
    else:
        # Several processes without a config file: one per GPU (DDP); on a CPU host the trainers fall
        # back to gloo themselves.
        command += ["--multi_gpu"]
    return command + ["-m", module, "--config", str(config_path)]


def thin(points: list, limit: int = HISTORY_POINTS) -> list:
    while len(points) > limit:
        points = points[::2]
    return points


def die_with_parent() -> None:
    """In the trainer's process, before it starts: Linux kills it when the worker dies, so that a run
    handed to another worker never has two trainers writing one directory (elsewhere: nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_trainer(job, command: list[str], output: Path, on_progress) -> TrainerOutcome:
    """Start `command`, call `on_progress(dict)` with each new progress file, stop the child if
    `job` is cancelled meanwhile. The child's output goes to output/train.log."""
    log_path = output / "train.log"
    files = RunDirectory(output)
    files.clear_status()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    root = Path(__file__).resolve().parent.parent
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True, cwd=root, preexec_fn=die_with_parent)
        last, beaten = None, time.monotonic()
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            if time.monotonic() - beaten >= run_lease().total_seconds() / 4 and hasattr(job, "beat"):
                job.beat()
                beaten = time.monotonic()
            progress = files.read_progress()
            if progress and progress != last:
                on_progress(progress)
                last = progress
            if type(job).objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                return TrainerOutcome(True, child.returncode, None, "")
    progress = files.read_progress()
    if progress and progress != last:
        on_progress(progress)
    tail = log_path.read_bytes()[-LOG_TAIL:].decode(errors="replace")
    result = files.read_result() if child.returncode == 0 else None
    return TrainerOutcome(False, child.returncode, result, tail)


def run_lease() -> timedelta:
    return timedelta(seconds=settings.ONEREWARD_RUN_LEASE_SECONDS)


def run_models() -> list[type[TrainingRun]]:
    """Every concrete kind of run (the apps' subclasses)."""
    found, pending = [], list(TrainingRun.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if not model._meta.abstract:
            found.append(model)
    return found


@shared_task(name="runs.requeue_stale_runs")
def requeue_stale_runs() -> int:
    """Running runs whose worker stopped beating (it died, whatever name it comes back under) go
    back to the queue, to resume from their last checkpoint; a compare-and-set on the heartbeat,
    so a run whose worker beat meanwhile stays with it."""
    requeued = 0
    stale = timezone.now() - run_lease()
    for model in run_models():
        rows = model.objects.filter(status=JobStatus.RUNNING).filter(
            models.Q(heartbeat_at__lt=stale) | models.Q(heartbeat_at__isnull=True, started_at__lt=stale))
        for run in rows:
            if model.objects.filter(pk=run.pk, status=JobStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                    status=JobStatus.QUEUED):
                run.refresh_from_db()
                run.enqueue()
                requeued += 1
    return requeued


@worker_ready.connect(dispatch_uid="runs-requeue-stale")
def requeue_runs_of_dead_workers(sender=None, **kwargs):
    # Now, and once more a lease later for runs whose heartbeat was still fresh at this start.
    requeue_stale_runs()
    requeue_stale_runs.apply_async(countdown=run_lease().total_seconds() + 1)


class RunTraining:
    """One training of a run on a worker. Subclasses fill in the steps that are their own:
    `prepare` (the trainer's inputs in the run's directory), `histories` (the curves from every
    logged step) and `register` (what a finished run leaves, keyed by the run so a retry is safe)."""

    # Messages on the run when a step fails; formatted with the run.
    preparing = "could not prepare the trainer's inputs"
    registering = "what the trainer made could not be registered"

    def __init__(self, run: TrainingRun, worker: str = ""):
        self.run = run
        self.worker = worker

    def prepare(self, output: Path) -> None:
        raise NotImplementedError

    def histories(self, metrics: list[dict]) -> dict:
        """Row fields holding the curves of a finished trainer (from every logged step, not from the
        polls that saw some of them)."""
        return {}

    def register(self, result: dict) -> None:
        raise NotImplementedError

    def execute(self) -> None:
        """Prepare, train, follow and register; the run's row tells what happened."""
        run = self.run
        if not run.claim(self.worker):
            return
        output = run.output_dir
        output.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare(output)
        except Exception as exc:  # noqa: BLE001 - recorded on the run
            run.fail(f"{self.preparing.format(run=run)}: {type(exc).__name__}: {exc}")
            return
        config_path = output / "config.json"
        config_path.write_text(json.dumps(run.training_config(), indent=2))
        outcome = run_trainer(run, run.trainer_command(config_path), output, run.copy_progress)
        if outcome.cancelled:
            return
        histories = self.histories(RunDirectory(output).read_metrics())
        if any(histories.values()):
            run._update(**histories)
        if outcome.result is None:
            cause = RunDirectory(output).read_failure() or f"the trainer exited with code {outcome.returncode}"
            run.fail(f"{cause}\n\nThe end of the trainer's log:\n{outcome.log_tail}")
            return
        self.finish(outcome.result)

    def finish(self, result: dict) -> None:
        try:
            with transaction.atomic():
                self.register(result)
                if not self.run.finish():
                    transaction.set_rollback(True)  # cancelled meanwhile: a cancelled run registers nothing
        except ValidationError as exc:
            self.run.fail(f"{self.registering.format(run=self.run)}: {'; '.join(exc.messages)}")


# --- the admin -----------------------------------------------------------------------------------


class TrainingRunAdmin(StartedJobAdmin):
    """Start a run (`add_form`, on the admin's own add page), watch it (a progress fragment that
    refreshes itself), cancel or resume it. Runs are never edited: the change page shows them."""

    add_title = ""
    list_filter = ["status"]
    actions = ["cancel_runs", "resume_runs"]
    change_form_template = "admin/runs/change_form.html"
    progress_template = "admin/runs/progress.html"

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"{obj} is queued on the GPU workers.", messages.SUCCESS)
        return redirect(self._url_name("change"), obj.pk)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if add:
            context["title"] = self.add_title
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, unquote(object_id))
        if run is not None:
            extra_context = {**(extra_context or {}), **self.progress_context(run, request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # What the progress fragment shows beside the step, the loss and the ETA.
    def progress_figures(self, run) -> list[str]:
        return []

    def progress_plot(self, run) -> str:
        return ""

    def progress_context(self, run, request) -> dict:
        # The tools refresh with the progress: Cancel while the run is unfinished, Resume (or Run
        # again, when no checkpoint was saved) once it failed or was cancelled.
        return {"run": run, "opts": self.model._meta, "steps": self.progress_figure(run), "eta": self.eta(run),
                "figures": self.progress_figures(run), "plot": self.progress_plot(run),
                "progress_template": self.progress_template, "can_manage": self.has_add_permission(request),
                "resume_step": run.last_checkpoint_step if run.can_resume else None}

    @admin.display(description="Progress")
    def progress_figure(self, run):
        return f"step {run.step} of {run.planned_steps or '?'}"

    @admin.display(description="ETA")
    def eta(self, run):
        if run.eta_seconds is None or run.is_finished:
            return "–"
        minutes, seconds = divmod(int(run.eta_seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}"

    @admin.display(description="Directory on the GPU host")
    def output_directory(self, run):
        return str(run.output_dir)

    def _url_name(self, view: str) -> str:
        opts = self.model._meta
        return f"admin:{opts.app_label}_{opts.model_name}_{view}"

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        return [
            path("<int:pk>/progress/", view(self.progress_view), name=f"{prefix}_progress"),
            path("<int:pk>/cancel/", view(self.cancel_view), name=f"{prefix}_cancel"),
            path("<int:pk>/resume/", view(self.resume_view), name=f"{prefix}_resume"),
            *super().get_urls(),
        ]

    def _run(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(self.model, pk=pk)

    def _managed_run(self, request, pk):
        run = self._run(request, pk)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        return run

    def progress_view(self, request, pk):
        run = self._run(request, pk)
        return progress_response(request, self.progress_template, self.progress_context(run, request), run)

    def cancel_view(self, request, pk):
        run = self._managed_run(request, pk)
        if run.cancel():
            self.message_user(request, f"{run} is cancelled; its checkpoints are kept for a resume.", messages.SUCCESS)
        return redirect(self._url_name("change"), run.pk)

    def resume_view(self, request, pk):
        run = self._managed_run(request, pk)
        step = run.last_checkpoint_step
        if run.resume():
            where = f"it continues from its checkpoint at step {step}" if step is not None else \
                "it starts from the beginning (no checkpoint was saved)"
            self.message_user(request, f"{run} is queued again; {where}.", messages.SUCCESS)
        return redirect(self._url_name("change"), run.pk)

    @admin.action(description="Cancel the selected runs", permissions=["add"])
    def cancel_runs(self, request, queryset):
        self.message_user(request, f"{sum(run.cancel() for run in queryset)} run(s) cancelled.")

    @admin.action(description="Resume the selected runs from their last checkpoint", permissions=["add"])
    def resume_runs(self, request, queryset):
        self.message_user(request, f"{sum(run.resume() for run in queryset)} run(s) queued again.")


# --- the API -------------------------------------------------------------------------------------

# What a run's API object shows of its state; written by the worker, never by a client.
STATE_FIELDS = ["status", "step", "total_steps", "loss", "eta_seconds", "error", "created_at", "started_at",
                "finished_at"]


class TrainingRunSerializer(serializers.ModelSerializer):
    """The row's own rules (model clean(), with the trainer's config) run in validate(), where DRF
    turns Django's ValidationError into a 400 naming the fields; create() only saves and queues."""

    def get_extra_kwargs(self):
        # The platform's one seed range, narrower than the column's (onereward.bounds).
        extra = super().get_extra_kwargs()
        return {**extra, "seed": {**SEED_RANGE, **extra.get("seed", {})}}

    def validate(self, attrs):
        columns, _ = split_relations(self.Meta.model, attrs)
        self.Meta.model(**columns).full_clean(exclude=["created_by"])
        return attrs

    def create(self, validated_data):
        request = self.context.get("request")
        user = request.user if request and request.user.is_authenticated else None
        columns, relations = split_relations(self.Meta.model, validated_data)
        run = self.Meta.model(created_by=user, **columns)
        run.launch(relations)
        return run


class RunPermission(ModelPermissionsWithView):
    """Cancel and resume need the right to start (add) runs."""

    action_perms = {action: ["%(app_label)s.add_%(model_name)s"] for action in ("cancel", "resume")}

class TrainingRunViewSet(StartedJobViewSet):
    """POST starts a run on the GPU workers (202); GET one to follow it; cancel and resume it."""

    permission_classes = [RunPermission]

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        run = self.get_object()
        run.resume()
        return Response(self.get_serializer(run).data)


# --- the command line ----------------------------------------------------------------------------


def field_default(model, name: str):
    return model._meta.get_field(name).get_default()


class TrainingRunCommand(BaseCommand):
    """Start a run from the command line: queued on a GPU worker, followed with --wait, or trained in
    this process with --here. A subclass adds its options (`add_run_arguments`), turns them into
    the run's fields (`run_fields`) and says what a finished run left (`report`)."""

    model = None
    training = RunTraining

    def add_run_arguments(self, parser) -> None:
        raise NotImplementedError

    def run_fields(self, options) -> dict:
        raise NotImplementedError

    def describe(self, run) -> str:
        """One line while following a run with --wait."""
        return f"{run.get_status_display()}: step {run.step}/{run.planned_steps or '?'} loss {run.loss}"

    def report(self, run) -> None:
        raise NotImplementedError

    def add_arguments(self, parser):
        self.add_run_arguments(parser)
        parser.add_argument("--name", default="")
        parser.add_argument("--seed", type=int, default=field_default(self.model, "seed"))
        parser.add_argument("--save-every", type=int, default=field_default(self.model, "save_every"),
                            help="checkpoint every N steps (the resume point)")
        parser.add_argument("--processes", type=int, default=field_default(self.model, "processes"),
                            help="processes for accelerate launch (GPUs)")
        parser.add_argument("--accelerate-config", default="",
                            choices=[value for value, _ in self.model._meta.get_field("accelerate_config").choices])
        parser.add_argument("--extra", default="{}", help="more trainer settings as a JSON object")
        parser.add_argument("--user", help="username recorded as the starter")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--here", action="store_true", help="train in this process instead of on a worker")
        where.add_argument("--wait", action="store_true", help="queue on a GPU worker and follow the run")

    @staticmethod
    def json_option(options, name: str, example: str):
        try:
            return json.loads(options[name])
        except ValueError:
            flag = "--" + name.replace("_", "-")
            raise CommandError(f"{flag} takes a JSON object, e.g. '{example}'") from None

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        fields = {"name": options["name"], "seed": options["seed"], "save_every": options["save_every"],
                  "processes": options["processes"], "accelerate_config": options["accelerate_config"],
                  "extra": self.json_option(options, "extra", '{"log_every": 5}'), **self.run_fields(options)}
        try:
            run = start(self.model, user=user, queue=not options["here"], **fields)
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        self.stdout.write(f"{run} (id {run.pk}){self.started_on(run)}: output in {run.output_dir}")
        if options["here"]:
            self.training(run, worker="command line").execute()
        elif options["wait"]:
            follow(run, self.describe, self.stdout.write, interval=2)
        else:
            return
        run.refresh_from_db()
        if run.status != JobStatus.DONE:
            raise CommandError(f"{run} ended {run.get_status_display().lower()}: {run.error}")
        self.report(run)

    def started_on(self, run) -> str:
        """What the run trains on, for the first line (" on DATASET")."""
        return ""
