from celery import shared_task

from .archive_import import run_archive_import
from .models import InputImport


@shared_task(name="inputs.import_inputs_archive")
def import_inputs_archive(job_id: int) -> None:
    run_archive_import(InputImport.objects.get(pk=job_id))
