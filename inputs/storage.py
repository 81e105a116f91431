"""Saving and removing the files of inputs and imports, through the storage API.

Removing a file on a local filesystem leaves its folder behind. The folders under inputs/ and
imports/ exist only to hold such files, so those a removal empties are removed too, up to the
storage's root. An object store (S3) has no folders, and nothing more is done there.
"""
import os
import posixpath

from django.core.files.storage import default_storage

SAVE_ATTEMPTS = 3


def save_file(name: str, content, storage=default_storage) -> str:
    """Save `content` under `name`; returns the name stored. Another import removing a shared folder
    it emptied (inputs/ab/) can do so between this save making the folder and writing its file; the
    save is then made again, which makes the folder again."""
    attempt = 1
    while True:
        try:
            return storage.save(name, content)
        except FileNotFoundError:
            if attempt == SAVE_ATTEMPTS:
                raise
            attempt += 1
            content.seek(0)


def delete_files(names, storage=default_storage) -> None:
    """Delete stored files (missing ones are no error), then the folders this leaves empty."""
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            pass
    for name in names:
        _remove_empty_folders(posixpath.dirname(name), storage)


def _remove_empty_folders(folder: str, storage) -> None:
    """Remove `folder` and its parents while they are empty. rmdir refuses a folder that holds
    anything, so another input's or a concurrent import's files are never touched."""
    while folder:
        try:
            path = storage.path(folder)
        except NotImplementedError:
            return  # not a local filesystem: no folders
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass  # removed already (two files of one folder, or a concurrent removal)
        except OSError:
            return  # not empty
        folder = posixpath.dirname(folder)
