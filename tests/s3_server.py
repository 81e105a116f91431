"""A real S3 server for tests (moto's standalone server speaking the protocol on localhost) and
the settings that make it the default storage. Test modules that run a feature on S3 load this
module as a plugin, `pytest_plugins = ["tests.s3_server"]`, and take the `s3_settings` fixture."""
import socket
import subprocess
import sys
import time

import boto3
import pytest

BUCKET = "onereward-media"
LOCATION = "media"


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


class Bucket:
    """The test bucket, as the tests read it: `client` (boto3), `name`, keys and bytes by storage name."""

    def __init__(self, client):
        self.client, self.name = client, BUCKET

    def keys(self, prefix: str = "") -> list[str]:
        """The storage names under `prefix` (keys below the storage's location), sorted."""
        found = self.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{LOCATION}/{prefix}").get("Contents", [])
        return sorted(item["Key"][len(LOCATION) + 1:] for item in found)

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=f"{LOCATION}/{name}")["Body"].read()


@pytest.fixture
def s3_settings(settings, s3_endpoint, monkeypatch):
    """S3 as the default storage (an empty bucket); yields the Bucket. The variables are set too, as
    a deployment sets them: the trainers' cores read s3:// images with them (no Django there)."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    settings.AWS_STORAGE_BUCKET_NAME = BUCKET
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "test"
    settings.AWS_SECRET_ACCESS_KEY = "test"
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_LOCATION = LOCATION
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    for name, value in {"BUCKET": BUCKET, "ENDPOINT_URL": s3_endpoint, "REGION": "us-east-1", "ACCESS_KEY_ID": "test",
                        "SECRET_ACCESS_KEY": "test", "PREFIX": LOCATION}.items():
        monkeypatch.setenv(f"ONEREWARD_S3_{name}", value)
    yield Bucket(client)
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
