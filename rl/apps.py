from django.apps import AppConfig


class RLConfig(AppConfig):
    name = "rl"
    verbose_name = "RL runs"

    def ready(self):
        from annotation.events import holds_tasks
        from generation.events import batch_finished

        from . import round_admin, round_tasks, signals  # noqa: F401
        from .rounds import advance_rounds_of, holds_round_tasks

        # Collection rounds open their batches' tasks themselves, in their strategy's order.
        holds_tasks.connect(holds_round_tasks, dispatch_uid="rl-collection-round-holds-tasks")
        batch_finished.connect(advance_rounds_of, dispatch_uid="rl-collection-round-batch-finished")
