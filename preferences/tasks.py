from celery import shared_task

from .export import build
from .feedback_imports import run_import
from .models import FeedbackImport, PreferenceDataset


@shared_task(name="preferences.build_preference_dataset")
def build_preference_dataset(dataset_id: int) -> None:
    build(PreferenceDataset.objects.get(pk=dataset_id))


@shared_task(name="preferences.import_feedback")
def import_feedback(import_id: int) -> None:
    run_import(FeedbackImport.objects.get(pk=import_id))
