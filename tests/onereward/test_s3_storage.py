"""With the S3 variables set, inputs go to an S3-compatible store through the storage API
(a real S3 server speaking the protocol on localhost: moto's standalone server)."""
import socket
import subprocess
import sys
import time

import boto3
import pytest
from django.core.files.storage import default_storage, storages

from inputs.importing import InputSpec, import_inputs
from tests.conftest import box_mask, photo, png_bytes, stored_files

BUCKET = "onereward-media"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the S3 test server did not start")
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_settings(settings, s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    settings.AWS_STORAGE_BUCKET_NAME = BUCKET
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "test"
    settings.AWS_SECRET_ACCESS_KEY = "test"
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_LOCATION = "media"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.mark.django_db
def test_inputs_are_stored_in_s3_and_served_from_it(s3_settings, client, make_user):
    assert type(storages["default"]).__name__ == "S3Storage"
    spec = InputSpec(entry="kite.png", task="image_fill", source=png_bytes(photo(seed=11)), source_name="kite.png",
                     mask=png_bytes(box_mask()), mask_name="kite_mask.png", prompt="a kite")
    created = import_inputs([spec])[0]
    keys = sorted(o["Key"] for o in s3_settings.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted(f"media/{getattr(created, f).name}" for f in ("source", "mask", "thumbnail"))
    assert stored_files() == []  # nothing on the local disk

    client.force_login(make_user("boss", "admin"))
    response = client.get(f"/inputs/{created.pk}/source.img")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == default_storage.open(created.source.name).read()
