"""Pages for people: the input gallery (admins, ML engineers) and the annotator's start page."""
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from onereward.files import stored_file_response
from onereward.roles import roles_of

from .models import Input, Tag, Task

FILE_KINDS = {"source": "image/png", "mask": "image/png", "thumbnail": "image/jpeg"}


@login_required
def home(request):
    slugs = {role.slug for role in roles_of(request.user)}
    if request.user.has_perm("inputs.view_input"):
        return redirect("input-list")
    if "annotator" in slugs:
        return redirect("annotate-home")
    return render(request, "annotation/no_role.html", status=403)


@require_GET
@permission_required("inputs.view_input", raise_exception=True)
def input_list(request):
    inputs = Input.objects.select_related("task").prefetch_related("tags")
    task_slug, tag_name = request.GET.get("task", ""), request.GET.get("tag", "")
    if task_slug:
        inputs = inputs.filter(task__slug=task_slug)
    if tag_name:
        inputs = inputs.filter(tags__name=tag_name)
    page = Paginator(inputs, 48).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "tasks": Task.objects.all(),
        "tags": Tag.objects.all(),
        "task_slug": task_slug,
        "tag_name": tag_name,
        "total": page.paginator.count,
    }
    template = "inputs/_input_grid.html" if request.headers.get("HX-Request") else "inputs/input_list.html"
    return render(request, template, context)


@require_GET
@permission_required("inputs.view_input", raise_exception=True)
def input_detail(request, pk):
    item = get_object_or_404(Input.objects.select_related("task"), pk=pk)
    return render(request, "inputs/input_detail.html", {"input": item, "dimensions": item.judged_dimensions()})


@require_GET
@permission_required("inputs.view_input", raise_exception=True)
def input_file(request, pk, kind):
    """Input pixels through the storage API, behind the same permission as the page."""
    if kind not in FILE_KINDS:
        raise Http404("unknown file kind")
    item = get_object_or_404(Input, pk=pk)
    return stored_file_response(getattr(item, kind).name, FILE_KINDS[kind])
