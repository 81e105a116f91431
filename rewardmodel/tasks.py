from celery import shared_task

from .execution import RewardModelTraining
from .models import RewardModelRun


@shared_task(name="rewardmodel.core.train", bind=True)
def train_reward_model(self, run_id: int) -> None:
    RewardModelTraining(RewardModelRun.objects.get(pk=run_id), worker=self.request.hostname or "").execute()
