"""Celery tasks of collection rounds: the scoring job (GPU queue, as "rl.*" is routed) and the
scheduler's tick, which beat sends every minute to the default queue (settings: the beat schedule
and the tick's own route)."""
from celery import shared_task

from .rounds import CollectionRound, score_round, tick


@shared_task(name="rl.score_collection_round", bind=True)
def score_collection_round(self, round_id: int) -> None:
    score_round(CollectionRound.objects.get(pk=round_id), worker=self.request.hostname or "")


@shared_task(name="rl.collection_tick")
def collection_tick() -> list[int]:
    """Start the rounds whose schedules are due; returns their ids."""
    return [started.pk for started in tick()]
