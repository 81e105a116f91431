"""Admin page for the generator leaderboard: per task and dimension, the generators' Bradley-Terry
scores from the human evaluation studies, as a table and a forest plot (onereward.charts).

The page hangs off the studies' admin (the outcomes come from studies); the studies' and the
annotation tasks' change lists link to it. Reading it needs the view permission on study picks:
platform admins and ML engineers have it; annotators never reach the admin.
"""
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from inputs.models import Dimension, Task
from onereward import charts

from . import leaderboard as board

VIEW_PERMISSION = "evaluation.view_studypick"
POINT_COLOUR, BAR_COLOUR, ZERO_COLOUR = "#205067", "#79aec8", "#999"


def _log_strength(tick: float) -> str:
    return "0" if tick == 0 else f"{tick:+.2f}".rstrip("0").rstrip(".")


def forest_plot(table: board.LeaderboardTable) -> str:
    """One line per generator, best at the top: the score as a dot and its interval as a bar, on the
    log-strength axis (0 = the table's average generator; the dashed line)."""
    rows = []
    for row in table.rows:
        interval = f" ({row.ci_low:+.2f} to {row.ci_high:+.2f})" if row.ci_low is not None else ""
        tip = (f"{row.generator}: {row.score:+.2f}{interval}, rating {row.rating:.0f}, "
               f"{row.wins} won / {row.losses} lost")
        rows.append(charts.Interval(row.generator, row.score, row.ci_low, row.ci_high, tip))
    # The axis spans 0.2 at least, so near-equal generators do not look far apart.
    title = f"{table.task_name}, {table.dimension_name}: log-strength and {table.level:.0%} interval per generator"
    return charts.interval_plot(
        rows, title=title, css_class="lb-chart", axis_label="log-strength (0 = average)", tick_label=_log_strength,
        min_span=0.2, point_colour=POINT_COLOUR, bar_colour=BAR_COLOUR, reference_colour=ZERO_COLOUR)


def table_cells(table: board.LeaderboardTable) -> dict:
    return {
        "table": table,
        "anchor": f"{table.task_slug}-{table.dimension_slug}",
        "rows": [{
            "row": row,
            "score": f"{row.score:+.2f}",
            "ci": f"{row.ci_low:+.2f} to {row.ci_high:+.2f}" if row.ci_low is not None else "–",
            "rating": f"{row.rating:.0f}",
            "rating_ci": f"{row.rating_low:.0f}–{row.rating_high:.0f}" if row.ci_low is not None else "",
        } for row in table.rows],
        "plot": forest_plot(table),
    }


def leaderboard_view(request, model_admin):
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    tasks = list(Task.objects.all())
    task = request.GET.get("task") or None
    if task not in {t.slug for t in tasks}:
        task = None
    dimensions = list(Dimension.objects.all())
    dimension = request.GET.get("dimension") or None
    if dimension not in {d.slug for d in dimensions} | {board.ALL_DIMENSIONS}:
        dimension = None
    tables = board.leaderboard(task=task, dimension=dimension)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Generator leaderboard",
        "tables": [table_cells(table) for table in tables],
        "task_choices": [(t.slug, t.name) for t in tasks],
        "dimension_choices": [(board.ALL_DIMENSIONS, board.ALL_DIMENSIONS_NAME),
                              *((d.slug, d.name) for d in dimensions)],
        "task": task or "",
        "dimension": dimension or "",
        "n_resamples": board.DEFAULT_RESAMPLES,
        "level": f"{board.DEFAULT_LEVEL:.0%}",
    }
    return TemplateResponse(request, "admin/evaluation/leaderboard.html", context)
