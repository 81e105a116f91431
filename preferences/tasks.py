from celery import shared_task

from .export import build
from .models import PreferenceDataset


@shared_task(name="preferences.build_preference_dataset")
def build_preference_dataset(dataset_id: int) -> None:
    build(PreferenceDataset.objects.get(pk=dataset_id))
