"""Deleting an input removes its files; the file view serves pixels behind the permission."""
import pytest

from inputs.importing import InputSpec, import_inputs
from inputs.models import Input
from tests.conftest import box_mask, photo, png_bytes, stored_files

pytestmark = pytest.mark.django_db(transaction=True)


def make_input(seed=1):
    spec = InputSpec(entry="a.png", task="image_fill", source=png_bytes(photo(seed=seed)), source_name="a.png",
                     mask=png_bytes(box_mask()), mask_name="a_mask.png", prompt="a kite")
    return import_inputs([spec])[0]


def test_deleting_an_input_removes_its_files():
    item = make_input()
    assert len(stored_files()) == 3
    Input.objects.filter(pk=item.pk).delete()
    assert stored_files() == []


def test_file_view(client, make_user):
    item = make_input()
    client.force_login(make_user("boss", "admin"))
    response = client.get(f"/inputs/{item.pk}/mask.img")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert client.get(f"/inputs/{item.pk}/secrets.img").status_code == 404
    client.force_login(make_user("ann", "annotator"))
    assert client.get(f"/inputs/{item.pk}/source.img").status_code == 403
