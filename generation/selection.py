"""Which inputs a batch covers: by task, by tag, or by a list of ids."""
from django.core.exceptions import ValidationError

from inputs.models import Input, Tag, Task


def select_inputs(*, task: str | None = None, tag: str | None = None, ids: list[int] | None = None):
    """Inputs matching every given criterion, in id order. Raises ValidationError for an unknown
    task, tag or id, or when nothing is chosen."""
    if not (task or tag or ids):
        raise ValidationError({"inputs": "choose inputs by task, tag or a list of ids"})
    queryset = Input.objects.select_related("task").order_by("pk")
    if task:
        if not Task.objects.filter(slug=task).exists():
            known = ", ".join(Task.objects.values_list("slug", flat=True))
            raise ValidationError({"task": f"unknown task {task!r} (known tasks: {known})"})
        queryset = queryset.filter(task__slug=task)
    if tag:
        if not Tag.objects.filter(name=tag).exists():
            raise ValidationError({"tag": f"no tag named {tag!r}"})
        queryset = queryset.filter(tags__name=tag)
    if ids:
        ids = sorted(set(ids))
        found = set(Input.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError({"inputs": f"no input with id {', '.join(map(str, missing))}"})
        queryset = queryset.filter(pk__in=ids)
    return queryset.distinct()
