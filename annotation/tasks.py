from celery import shared_task

from .archive_import import run_archive_import
from .models import InputImport


@shared_task(name="annotation.import_inputs_archive")
def import_inputs_archive(job_id: int) -> None:
    run_archive_import(InputImport.objects.get(pk=job_id))


@shared_task(name="annotation.build_preference_dataset")
def build_preference_dataset(dataset_id: int) -> None:
    from .models import PreferenceDataset
    from .preference_export import build

    build(PreferenceDataset.objects.get(pk=dataset_id))
