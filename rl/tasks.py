from celery import shared_task

from .execution import RLTraining
from .exports import run_export
from .models import PolicyExport, RLRun


@shared_task(name="rl.core.train", bind=True)
def train_policy(self, run_id: int) -> None:
    RLTraining(RLRun.objects.get(pk=run_id), worker=self.request.hostname or "").execute()


@shared_task(name="rl.export_policy")
def export_policy(export_id: int) -> None:
    run_export(PolicyExport.objects.select_related("checkpoint__generator").get(pk=export_id))
