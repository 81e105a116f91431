"""Files follow their rows: an input's images are removed from storage when the input is deleted."""
from django.db import transaction

from .storage import delete_files


def delete_input_files(sender, instance, **kwargs):
    """Once the deletion commits (a rollback loses nothing), with the folder the files leave empty."""
    names = [f.name for f in (instance.source, instance.mask, instance.thumbnail) if f and f.name]
    transaction.on_commit(lambda: delete_files(names))
