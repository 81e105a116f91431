"""Files follow their rows: an input's images are removed from storage when the input is deleted
(after the transaction commits, so a rolled-back delete loses nothing)."""
from django.core.files.storage import default_storage
from django.db import transaction


def delete_input_files(sender, instance, **kwargs):
    names = [f.name for f in (instance.source, instance.mask, instance.thumbnail) if f and f.name]

    def remove():
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(remove)
