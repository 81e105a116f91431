"""Admin page for the generator leaderboard: per task and dimension, the generators' Bradley-Terry
scores from the human evaluation studies, as a table and a forest plot (inline SVG drawn here).

The page hangs off the studies' admin (the outcomes come from studies); the studies' and the
annotation tasks' change lists link to it. Reading it needs the view permission on study picks: platform admins and ML
engineers have it; annotators never reach the admin.
"""
import math

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from . import leaderboard as board
from inputs.models import Dimension, Task

VIEW_PERMISSION = "evaluation.view_studypick"
POINT_COLOUR, BAR_COLOUR, ZERO_COLOUR = "#205067", "#79aec8", "#999"


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def forest_plot(table: board.LeaderboardTable) -> str:
    """One line per generator, best at the top: the score as a dot and its interval as a bar, on the
    log-strength axis (0 = the table's average generator; the dashed line)."""
    rows = table.rows
    if not rows:
        return ""
    values = [v for row in rows for v in (row.score, row.ci_low, row.ci_high) if v is not None] + [0.0]
    low, high = min(values), max(values)
    span = max(high - low, 0.2)
    step = _nice_step(span)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    label_w, plot_w, row_h, top = 170, 460, 22, 10
    height = top + len(rows) * row_h + 34
    width = label_w + plot_w + 20

    def x(value: float) -> float:
        return round(label_w + (value - low) / (high - low) * plot_w, 1)

    title = f"{table.task_name}, {table.dimension_name}: log-strength and {table.level:.0%} interval per generator"
    parts = [format_html(
        '<svg class="lb-chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><title>{}</title>', width, height, width, height, title, title)]
    bottom = top + len(rows) * row_h
    for k in range(round((high - low) / step) + 1):
        tick = low + k * step
        label = "0" if abs(tick) < step / 2 else f"{tick:+.2f}".rstrip("0").rstrip(".")
        parts.append(format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#eee"/><text x="{}" y="{}" font-size="11" '
            'text-anchor="middle" fill="#666">{}</text>', x(tick), top, x(tick), bottom, x(tick), bottom + 14, label))
    parts.append(format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-dasharray="4 3"/>'
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#666">log-strength (0 = average)</text>',
        x(0.0), top, x(0.0), bottom, ZERO_COLOUR, label_w + plot_w / 2, bottom + 30))
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        interval = f" ({row.ci_low:+.2f} to {row.ci_high:+.2f})" if row.ci_low is not None else ""
        tip = f"{row.generator}: {row.score:+.2f}{interval}, rating {row.rating:.0f}, {row.wins} won / {row.losses} lost"
        parts.append(format_html('<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#333">{}</text>',
                                 label_w - 8, y + 4, row.generator))
        if row.ci_low is not None:
            parts.append(format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="3"><title>{}</title></line>',
                x(row.ci_low), y, x(row.ci_high), y, BAR_COLOUR, tip))
        parts.append(format_html('<circle cx="{}" cy="{}" r="5" fill="{}"><title>{}</title></circle>',
                                 x(row.score), y, POINT_COLOUR, tip))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


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
        "dimension_choices": [(board.ALL_DIMENSIONS, board.ALL_DIMENSIONS_NAME), *((d.slug, d.name) for d in dimensions)],
        "task": task or "",
        "dimension": dimension or "",
        "n_resamples": board.DEFAULT_RESAMPLES,
        "level": f"{board.DEFAULT_LEVEL:.0%}",
    }
    return TemplateResponse(request, "admin/evaluation/leaderboard.html", context)
