"""Stored files served and removed through the storage API (local disk or S3 alike)."""
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, Http404


def stored_file_response(name: str, content_type: str, max_age: int = 3600) -> FileResponse:
    """Stream a stored file to a signed-in user; the caller has checked the permission."""
    if not name:
        raise Http404("no such file")
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = f"private, max-age={max_age}"
    return response


def delete_after_commit(fieldfiles) -> None:
    """Remove the files of a deleted row once its transaction commits (a rollback loses nothing)."""
    names = [f.name for f in fieldfiles if f and f.name]

    def remove():
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(remove)
