from celery import shared_task

from .execution import RLTraining
from .models import RLRun


@shared_task(name="rl.core.train", bind=True)
def train_policy(self, run_id: int) -> None:
    RLTraining(RLRun.objects.get(pk=run_id), worker=self.request.hostname or "").execute()
