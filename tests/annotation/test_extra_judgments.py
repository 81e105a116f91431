"""Sending tasks back for more judgments (annotation.extra_judgments), the one rule behind a reward
model's send-back and the human-disagreement collection rounds: more open regular slots, more
judgments wanted, handed to annotators who have not judged the task yet; a bad count or a gold task
is refused and changes nothing."""
import uuid

import pytest
from django.core.exceptions import ValidationError

from annotation.assignment import next_slot
from annotation.extra_judgments import ask_more_judgments
from annotation.judging import record_judgment
from annotation.models import AnnotationTask, QualityControlSettings, Slot
from tests.annotation.world import full_picks, make_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_mixing(db):
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()


def judge(user) -> AnnotationTask:
    slot = next_slot(user)
    record_judgment(user, slot.pk, {"submission_id": str(uuid.uuid4()), "dwell_ms": 9000, "picks": full_picks(slot)})
    return slot.task


def test_a_task_sent_back_goes_to_annotators_who_have_not_judged_it(no_mixing, make_user):
    task = make_tasks(1, k=1)[0]
    ann = make_user("ann", "annotator")
    assert judge(ann) == task and next_slot(ann) is None  # done: nothing left

    assert ask_more_judgments([task], 2) == [task]
    task.refresh_from_db()
    assert task.required_judgments == 3
    assert list(task.slots.values_list("kind", "state").order_by("pk")) == [
        ("regular", "done"), ("regular", "open"), ("regular", "open")]
    assert next_slot(ann) is None  # never the same annotator twice
    assert judge(make_user("bob", "annotator")) == task and judge(make_user("cy", "annotator")) == task
    task.refresh_from_db()
    assert task.judgments_done == 3 and next_slot(make_user("dee", "annotator")) is None


def test_a_bad_count_or_a_gold_task_is_refused_and_changes_nothing(no_mixing):
    regular, gold = make_tasks(2, k=1)
    AnnotationTask.objects.filter(pk=gold.pk).update(is_gold=True)
    gold.refresh_from_db()
    for count in (0, -1, None):
        with pytest.raises(ValidationError, match="at least one more judgment"):
            ask_more_judgments([regular], count)
    with pytest.raises(ValidationError, match=f"gold tasks are not sent back.*{gold.pk}"):
        ask_more_judgments([regular, gold], 1)
    assert Slot.objects.count() == 2
    assert set(AnnotationTask.objects.values_list("required_judgments", flat=True)) == {1}
