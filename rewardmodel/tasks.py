from celery import shared_task

from .ablation import run_ablation
from .execution import RewardModelTraining
from .models import JudgeAblation, RewardModelRun


@shared_task(name="rewardmodel.core.train", bind=True)
def train_reward_model(self, run_id: int) -> None:
    RewardModelTraining(RewardModelRun.objects.get(pk=run_id), worker=self.request.hostname or "").execute()


@shared_task(name="rewardmodel.judge_ablation", bind=True)
def judge_ablation(self, ablation_id: int) -> None:
    run_ablation(JudgeAblation.objects.get(pk=ablation_id), worker=self.request.hostname or "")
