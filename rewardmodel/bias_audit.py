"""The bias audit of a reward-model version (rewardmodel.core.bias_audit) from where ML engineers
work: the dataset's test pairs and the judge's scores of them, read from the run's directory on this
host, joined with the inputs' tags; a table and plots on the version's admin page, the API and
`manage.py bias_audit`."""
import json

import pyarrow.parquet as pq
from django.core.exceptions import ValidationError

from inputs.models import Input
from onereward import charts

from .core.bias_audit import DEFAULT_THRESHOLD, audit, scored_pairs
from .core.layout import split_shards
from .models import RewardModelVersion

TEST_COLUMNS = ["pair_id", "input_id", "task", "dimension", "winner_settings", "loser_settings"]


def version_audit(version: RewardModelVersion, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The audit of `version` on its dataset's test split; ValidationError says what is missing."""
    if threshold < 0 or threshold > 1:
        raise ValidationError(f"threshold must be between 0 and 1, got {threshold}")
    scores_path = version.scores_path
    if not scores_path.exists():
        raise ValidationError(f"{version} has no test scores ({scores_path.name} is missing on this host): "
                              "its run evaluated no test pairs")
    shards = split_shards(version.run.output_dir / "dataset", "test")
    if not shards:
        raise ValidationError(f"{version}'s run directory holds no test split of its dataset on this host")
    table = pq.read_table(scores_path, columns=["pair_id", "p_forward", "p_reversed"]).to_pydict()
    scores = {pair: (forward, reversed_) for pair, forward, reversed_ in
              zip(table["pair_id"], table["p_forward"], table["p_reversed"])}
    rows = [row for shard in shards for row in pq.read_table(shard, columns=TEST_COLUMNS).to_pylist()]
    input_ids = {row["input_id"] for row in rows}
    tags_of: dict[int, list[str]] = {}
    for input_id, tag in Input.objects.filter(pk__in=input_ids, tags__isnull=False).values_list("pk", "tags__name"):
        tags_of.setdefault(input_id, []).append(tag)
    result = audit(scored_pairs(rows, scores, tags_of), threshold)
    result["version"] = {"id": version.pk, "name": version.name}
    return result


def _percent(rate: dict) -> str:
    return "–" if rate["rate"] is None else f"{100 * rate['rate']:.1f}"


def setting_plot(result: dict) -> str:
    """Per setting, people's and the judge's rate of preferring the higher value, with intervals."""
    rows = []
    for row in result["settings"]:
        for who, key in (("people", "human_prefers_higher"), ("judge", "judge_prefers_higher")):
            rate = row[key]
            if rate["rate"] is not None:
                rows.append(charts.Interval(f"{row['setting']} · {who}", rate["rate"], rate["low"], rate["high"],
                                            f"{row['setting']}, {who}: {_percent(rate)} % of {row['pairs']} pairs"))
    return charts.interval_plot(rows, title="Preference for the higher setting: people and the judge",
                                css_class="audit-chart", axis_label="share preferring the higher value",
                                reference=0.5, min_span=0.2)


def group_plot(result: dict) -> str:
    rows = [charts.Interval(f"{row['kind']}: {row['group']}", row["judge_agreement"]["rate"],
                            row["judge_agreement"]["low"], row["judge_agreement"]["high"],
                            f"{row['group']}: {_percent(row['judge_agreement'])} % of "
                            f"{row['judge_agreement']['total']} pairs")
            for row in result["groups"] if row["judge_agreement"]["rate"] is not None]
    overall = result["overall_agreement"]["rate"]
    return charts.interval_plot(rows, title="The judge's agreement with people per task and tag",
                                css_class="audit-chart", axis_label="agreement (dashed: all pairs)",
                                reference=overall if overall is not None else 0.5, min_span=0.2)


def as_text(result: dict) -> str:
    lines = [f"{result['version']['name']}: {result['pairs']} test pairs, agreement with people "
             f"{_percent(result['overall_agreement'])} %, threshold {result['threshold']:.2f}", "",
             f"{'group':<32} {'pairs':>6} {'agree %':>8} {'gap':>7}"]
    for row in result["groups"]:
        gap = "–" if row["gap"] is None else f"{100 * row['gap']:+.1f}"
        lines.append(f"{row['kind'] + ': ' + row['group']:<32} {row['judge_agreement']['total']:>6} "
                     f"{_percent(row['judge_agreement']):>8} {gap:>7}{'  FLAGGED' if row['flagged'] else ''}")
    lines += ["", f"{'setting':<16} {'pairs':>6} {'people %':>9} {'judge %':>8} {'gap':>7}  (prefer the higher)"]
    for row in result["settings"]:
        gap = "–" if row["gap"] is None else f"{100 * row['gap']:+.1f}"
        lines.append(f"{row['setting']:<16} {row['pairs']:>6} {_percent(row['human_prefers_higher']):>9} "
                     f"{_percent(row['judge_prefers_higher']):>8} {gap:>7}{'  FLAGGED' if row['flagged'] else ''}")
    return "\n".join(lines)


def as_json(result: dict) -> str:
    return json.dumps(result, indent=2)
