"""Every form that takes a seed (the admin's start pages) and the API and command that share its
rule refuse one outside 0 … 2**31 - 1 on the seed's own field with one message (onereward.bounds),
and take the two ends of the range."""
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from generation.forms import BatchLaunchForm
from onereward.bounds import INTEGER_MAX, SEED_MESSAGE
from preferences.forms import PreferenceDatasetForm
from rewardmodel.forms import RewardModelRunForm
from rl.forms import RLRunForm
from rl.round_admin import CollectionRoundForm, CollectionScheduleForm

pytestmark = pytest.mark.django_db

FORMS = [(BatchLaunchForm, "seed"), (RewardModelRunForm, "seed"), (RLRunForm, "seed"),
         (PreferenceDatasetForm, "split_seed"), (CollectionRoundForm, "seed"), (CollectionScheduleForm, "seed")]


@pytest.mark.parametrize("form_class, field", FORMS, ids=[form.__name__ for form, _ in FORMS])
def test_a_seed_out_of_range_is_refused_on_its_field_with_one_message(form_class, field):
    for value in (2**31, -1, 10**20):
        errors = form_class(data={field: value}).errors
        assert errors.get(field) == [SEED_MESSAGE], (value, errors.get(field))
    for value in (0, INTEGER_MAX):
        assert field not in form_class(data={field: value}).errors, value


def test_the_page_shows_the_range_and_the_command_and_the_api_refuse_the_same(make_user, client):
    client.force_login(make_user("boss", "admin"))
    page = client.get("/admin/rl/collectionround/add/").content.decode()
    seed_input = next(tag for tag in page.split("<input")[1:] if 'name="seed"' in tag)
    assert 'min="0"' in seed_input and f'max="{INTEGER_MAX}"' in seed_input
    response = client.post("/admin/rl/collectionround/add/", {"strategy": "random", "candidates_per_input": 2,
                                                              "annotation_overlap": 1, "seed": 2**31})
    assert response.status_code == 200 and "2**31 - 1" in response.content.decode()
    with pytest.raises(CommandError, match=r"seed: a seed is a whole number from 0 to 2147483647"):
        call_command("collection_round", "--seed", str(2**31), "--here")
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.get("/api/leaderboard/", {"seed": 2**31})
    assert response.status_code == 400 and "seed" in response.json()
