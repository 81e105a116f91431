"""With the S3 variables set, inputs go to an S3-compatible store through the storage API
(a real S3 server speaking the protocol on localhost: moto's standalone server)."""
import pytest
from django.core.files.storage import default_storage, storages

from inputs.importing import InputSpec, import_inputs
from tests.conftest import box_mask, photo, png_bytes, stored_files

pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture


@pytest.mark.django_db
def test_inputs_are_stored_in_s3_and_served_from_it(s3_settings, client, make_user):
    assert type(storages["default"]).__name__ == "S3Storage"
    spec = InputSpec(entry="kite.png", task="image_fill", source=png_bytes(photo(seed=11)), source_name="kite.png",
                     mask=png_bytes(box_mask()), mask_name="kite_mask.png", prompt="a kite")
    created = import_inputs([spec])[0]
    keys = sorted(o["Key"] for o in s3_settings.client.list_objects_v2(Bucket=s3_settings.name)["Contents"])
    assert keys == sorted(f"media/{getattr(created, f).name}" for f in ("source", "mask", "thumbnail"))
    assert stored_files() == []  # nothing on the local disk

    client.force_login(make_user("boss", "admin"))
    response = client.get(f"/inputs/{created.pk}/source.img")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == default_storage.open(created.source.name).read()
