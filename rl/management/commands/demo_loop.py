"""The whole loop on the demo models, start to finish, in this process, printing each stage's
figures: demo inputs -> candidates from the demo FLUX Fill -> simulated annotation by an oracle ->
a preference dataset -> a reward-model run on the demo judge -> an RL run -> the checkpoint as a
generator -> evaluation batches of policy and base on held-out inputs -> a human study judged by
the oracle -> its report. Every stage goes through the code the admin, the API and the workers use.
"""
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation.simulation import simulate, simulated_annotators
from evaluation.simulation import simulate_studies
from evaluation.studies import study_report
from generation.demo import DEMO_RL_INITIAL, FLUX_DEMO
from generation.execution import run_batch_here
from generation.models import GenerationBatch, Generator
from inputs.models import Input, Tag
from onereward.jobs import JobStatus
from preferences.export import build, create_dataset
from rewardmodel.demo import DEMO_RUN_INITIAL, default_base_model
from rewardmodel.execution import RewardModelTraining
from rewardmodel.forms import start_run as start_reward_model_run
from rl.execution import RLTraining, start_human_study
from rl.forms import start_run as start_rl_run

TRAIN_TAG, HELD_OUT_TAG = "demo-loop-train", "demo-loop-held-out"


class Command(BaseCommand):
    help = "Run the whole OneReward loop on the demo models in this process, printing each stage's figures."

    def add_arguments(self, parser):
        parser.add_argument("--oracle", default="brightness", help="the simulated annotators' oracle")
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--noise", type=float, default=0.1)
        parser.add_argument("--candidates", type=int, default=4, help="candidates per input (N)")
        parser.add_argument("--steps", type=int, default=DEMO_RL_INITIAL["extra"]["rollout"]["steps"],
                            help="denoising steps of the generated candidates (default: the RL rollouts')")
        parser.add_argument("--rl-steps", type=int, default=DEMO_RL_INITIAL["max_steps"])
        parser.add_argument("--algorithm", choices=["fixed", "dynamic"], default="dynamic")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options):
        self.started = time.perf_counter()
        flux = Generator.objects.filter(name=FLUX_DEMO).first()
        if flux is None:
            self.stage("seed", "the demo (users, inputs, models)")
            call_command("seed_demo", stdout=self.stdout)
            flux = Generator.objects.get(name=FLUX_DEMO)
        train, held_out = self.split_inputs()
        self.stage("inputs", f"{len(train)} inputs to learn from, {len(held_out)} held out for the study")

        ranges = {"steps": [options["steps"], options["steps"]], "guidance": [30.0, 30.0], "true_cfg": [1.0, 1.0],
                  "vary": "candidate"}
        # Every simulated annotator judges every set: votes to aggregate, as with a team of people.
        batch = GenerationBatch.launch(generator=flux, inputs=train, candidates_per_input=options["candidates"],
                                       ranges=ranges, seed=options["seed"], name="demo loop: preferences",
                                       annotation_overlap=options["annotators"])
        run_batch_here(batch, worker="demo loop")
        self.check_done(batch, "the preference batch")
        self.stage("generation", f"{batch.progress_done} candidate sets of {options['candidates']} ({batch})")

        users = simulated_annotators(options["oracle"], options["annotators"], options["noise"], options["seed"])
        report = simulate(users, batch=batch)
        self.stage("annotation", f"{report.judged} judgments by {len(users)} simulated annotators "
                                 f"(oracle {options['oracle']}, noise {options['noise']:g})")

        dataset = create_dataset(name="demo-loop", batches=[batch], include_simulated=True, queue=False,
                                 train_fraction=0.7, validation_fraction=0.15, test_fraction=0.15,
                                 split_seed=options["seed"])
        build(dataset)
        dataset.refresh_from_db()
        self.check_done(dataset, "the dataset")
        warnings = "; ".join(dataset.manifest.get("warnings", [])) or "no warnings"
        self.stage("dataset", f"{dataset}: {dataset.pair_count} pairs, inputs per split "
                              f"{dataset.manifest['inputs_per_split']} ({warnings})")

        run = start_reward_model_run(dataset=dataset, base_model=default_base_model(), **DEMO_RUN_INITIAL,
                                     seed=options["seed"], queue=False)
        RewardModelTraining(run, worker="demo loop").execute()
        run.refresh_from_db()
        self.check_done(run, "the reward-model run")
        version = run.version
        overall = next((row for row in version.evaluation.get("rows", []) if row["task"] == "all"), None)
        accuracy = version.evaluation.get("not_evaluated") or (
            f"held-out accuracy {overall['accuracy']:.1f} % over {overall['pairs']} pairs" if overall else "-")
        self.stage("reward model", f"{version} after {version.steps} steps: {accuracy}")

        rl_settings = {**{k: v for k, v in DEMO_RL_INITIAL.items() if k != "max_steps"},
                       "max_steps": options["rl_steps"]}
        tags = {"train_tags": [Tag.objects.get(name=TRAIN_TAG)], "eval_tags": [Tag.objects.get(name=HELD_OUT_TAG)]}
        rl_run = start_rl_run(base_generator=flux, reward_model=version, algorithm=options["algorithm"],
                              seed=options["seed"], queue=False, **tags, **rl_settings)
        RLTraining(rl_run, worker="demo loop").execute()
        rl_run.refresh_from_db()
        self.check_done(rl_run, "the RL run")
        checkpoint = rl_run.checkpoint
        reward = "-" if rl_run.reward_mean is None else f"{rl_run.reward_mean:.4f}"
        self.stage("RL", f"{rl_run}: {rl_run.step} steps, mean reward (P(Yes) against the reference) {reward}; "
                         f"the policy is the generator {checkpoint.generator.name!r}")

        batches = start_human_study(checkpoint, inputs=held_out, judgments_per_item=options["annotators"])
        for evaluation_batch in batches:
            run_batch_here(evaluation_batch, worker="demo loop")
            self.check_done(evaluation_batch, f"the evaluation batch {evaluation_batch}")
        checkpoint.refresh_from_db()
        if checkpoint.study is None:
            raise CommandError("the study of the checkpoint was not created when its batches finished")
        self.stage("evaluation batches", f"policy and base on {len(held_out)} held-out inputs; study "
                                         f"{checkpoint.study}")

        judged = simulate_studies(users, study=checkpoint.study)
        figures = study_report(checkpoint.study)
        self.stage("study", f"{judged.judged} study judgments by the oracle")
        for block in figures["gsb"]:
            if block["a"] != "policy":
                continue
            for task in block["tasks"]:
                overall = next(row for row in task["rows"] if row["dimension"] == "overall")
                self.stdout.write(f"  policy vs base, {task['task']}: good {overall['good']} / same {overall['same']} "
                                  f"/ bad {overall['bad']} (net {overall['net']:+.2f})")

    def split_inputs(self) -> tuple[list, list]:
        """The demo inputs with a mask of their own, every third held out (tagged, for the RL run)."""
        inputs = list(Input.objects.filter(tags__name="demo").order_by("pk"))
        if len(inputs) < 4:
            raise CommandError("the demo needs its inputs: run `manage.py seed_demo`")
        held_out = inputs[::3]
        train = [item for item in inputs if item not in held_out]
        with transaction.atomic():
            train_tag, _ = Tag.objects.get_or_create(name=TRAIN_TAG)
            held_tag, _ = Tag.objects.get_or_create(name=HELD_OUT_TAG)
            for item in train:
                item.tags.add(train_tag)
            for item in held_out:
                item.tags.add(held_tag)
        return train, held_out

    def check_done(self, job, what: str) -> None:
        job.refresh_from_db()
        if job.status != JobStatus.DONE:
            raise CommandError(f"{what} ended {job.get_status_display().lower()}: {job.error_cause or job.error}")

    def stage(self, name: str, figures: str) -> None:
        self.stdout.write(f"[{time.perf_counter() - self.started:7.1f} s] {name}: {figures}")
