"""Server time of the annotation endpoints on an empty and on a full database, in one run.

    .venv/bin/python bench/annotation_latency.py                     # 500 annotator rounds per database
    .venv/bin/python bench/annotation_latency.py --rounds 200 --databases onereward_bench
    .venv/bin/python bench/annotation_latency.py --plans             # print every query plan in full

Each database is measured in its own child process (Django is configured once per process), with
DJANGO_DEBUG=0. The databases are filled by bench/annotation_data.py; the empty one (2,000 tasks, no
judgment) is filled automatically when missing.

Per database, for `--rounds` rounds, each with the next of the 500 annotators:

  service level   next_slot(user) and record_judgment(user, slot, payload), called directly;
  HTTP level      through Django's test Client (the whole middleware stack, session and auth):
                  GET /annotate/ (the page, with the current task leased and rendered in it),
                  GET /annotate/task/?after=<that slot> (the next-task fragment the page prefetches),
                  GET /annotate/slots/<slot>/candidates/0.img, and one judgment POST for each of
                  the two leased slots (a complete answer: best/worst on every dimension).

Every request is timed alone; medians and 95th percentiles are printed with the number of SQL
queries it ran (the target for the annotator's requests is p95 < 50 ms; figures, not a verdict).
next-task and judgment times are also split by the kind of slot (regular queue, gold, repeat).
The bench annotators answer gold tasks right (looked up outside the timed requests) and others at
random: random gold answers would soon get them paused by the quality control.

Then EXPLAIN (ANALYZE, BUFFERS) of the queries behind those requests, captured as the application
sends them: the regular-queue slot query (FOR UPDATE SKIP LOCKED), the lookup of the annotator's
own lease, the gold and repeat task choices, the pool count, and the gold-accuracy queries a gold
POST runs; each again with the suggested indexes (SUGGESTED_INDEXES) in place, and the
regular-queue query written as suggested (suggested_query). The indexes are created for that
measurement and dropped right after it, so the database keeps its schema. --suggested-indexes
measures every request with them in place (the application's queries unchanged).

Leases the bench annotators still hold from an earlier run (the load test leaves some) are expired
first, as if their 20 minutes had passed. Each round judges tasks, so the bench data grow a little
with each run (the full database has 109,000 open slots; the empty one 21,780).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_common import EMPTY_DB, FULL_DB, REPO, bench_environment, careful_picks, summary_ms  # noqa: E402

SLOT_RE = re.compile(r'data-slot="(\d+)"')
N_RE = re.compile(r'data-n="(\d+)"')
SLUG_RE = re.compile(r'class="ann-dim" data-slug="([^"]+)"')
TARGET_P95_MS = 50


# --- child: measure one database -------------------------------------------------------------


class QueryCounter:
    """Counts the SQL statements run on the default connection (cheaper than capturing them)."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def timed(counter: QueryCounter, fn, *args, **kwargs):
    before = counter.count
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start, counter.count - before


def answer(slugs, n: int, i: int, slot=None) -> dict:
    """A complete answer; `slot` = (kind, shown_order, gold_answers) makes gold answers right."""
    best = i % n
    worst = (best + 1 + i % (n - 1)) % n
    picks = {slug: {"best": best, "worst": worst} for slug in slugs}
    if slugs and i % 7 == 0:
        picks[slugs[-1]] = {"discarded": True}
    if slot is not None:
        picks = careful_picks(*slot, picks)
    return {"submission_id": str(uuid.uuid4()), "dwell_ms": 9000 + i, "picks": picks}


def slot_facts(slot_id: int):
    """(kind, shown_order, gold answers) of a slot, looked up outside the timed requests."""
    from annotation.models import Slot

    return Slot.objects.filter(pk=slot_id).values_list("kind", "shown_order", "task__gold_answers").first()


def explain(sql: str, params=None) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        lines = [row[0] for row in cursor.fetchall()]
    scans = []
    for line in lines:
        match = re.search(r"(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan|Parallel Seq Scan)"
                          r"(?: Backward)?(?: using (\S+))? on (\S+)(?: (\S+))?", line)
        if match:
            kind, index, table, alias = match.groups()
            scans.append(f"{kind}{' using ' + index if index else ''} on {table}")
        removed = re.search(r"Rows Removed by Filter: (\d+)", line)
        if removed and scans:
            scans[-1] += f" (rows removed by filter: {int(removed.group(1)):,})"
    total = next((float(m.group(1)) for line in lines if (m := re.search(r"Execution Time: ([\d.]+) ms", line))), None)
    return {"ms": total, "scans": scans, "plan": lines}


def captured_sql(fn, match) -> str | None:
    """The SQL text (parameters inlined, as sent) of the first statement fn runs that `match` accepts;
    everything fn does is rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            fn()
        transaction.set_rollback(True)
    return next((q["sql"] for q in queries.captured_queries if match(q["sql"])), None)


def plans(user) -> dict:
    """EXPLAIN ANALYZE of the queries behind the annotator's requests, for one annotator: as the
    application runs them now, then again with the suggested indexes in place (created, measured,
    dropped), plus the regular-queue query written as suggested."""
    from django.core.cache import cache

    from annotation import assignment, quality
    from annotation import views as annotate_views
    from annotation.models import QualityControlSettings, SlotKind

    settings = QualityControlSettings.current()
    original = assignment._mix_in
    queries = {}
    try:
        assignment._mix_in = lambda user, settings: None  # the regular queue, whatever the dice say
        queries["regular queue slot (next_slot)"] = captured_sql(
            lambda: assignment.next_slot(user), lambda s: "SKIP LOCKED" in s)
        queries["own lease (next_slot)"] = captured_sql(
            lambda: assignment.next_slot(user),
            lambda s: s.startswith('SELECT "annotation_slot"') and 'leased_until" >' in s,
        )
    finally:
        assignment._mix_in = original
    queries["gold task choice (next_slot, gold_rate)"] = captured_sql(
        lambda: assignment._special_slot(user, SlotKind.GOLD, settings),
        lambda s: s.startswith('SELECT "annotation_annotationtask"'))
    queries["repeat task choice (next_slot, repeat_share)"] = captured_sql(
        lambda: assignment._special_slot(user, SlotKind.REPEAT, settings),
        lambda s: s.startswith('SELECT "annotation_annotationtask"'))
    key = getattr(annotate_views, "POOL_COUNT_KEY", None)
    if key:
        cache.delete(key)  # this process's cached count, so that the count runs
    queries["open-in-pool count (page and fragment)"] = captured_sql(
        annotate_views._open_in_pool, lambda s: s.startswith("SELECT COUNT(*)"))
    if hasattr(quality, "update_standing"):
        standing = lambda: quality.update_standing(user)  # noqa: E731
        queries["gold answers (update_standing, after a gold POST)"] = captured_sql(
            standing, lambda s: '"gold_answers"' in s and s.startswith('SELECT "annotation_annotationtask"'))
        picks = captured_sql(standing, lambda s: "annotation_dimensionpick" in s)
        if picks and " CURSOR WITH HOLD FOR " in picks:
            picks = picks.split(" CURSOR WITH HOLD FOR ", 1)[1]  # .iterator() declares a cursor
        queries["annotator's gold picks (update_standing, after a gold POST)"] = picks
    queries = {name: sql for name, sql in queries.items() if sql}

    result = {name: {"now": explain_rolled_back(sql)} for name, sql in queries.items()}
    made = create_suggested_indexes()
    try:
        for name, sql in queries.items():
            result[name]["with indexes"] = explain_rolled_back(sql)
        result["regular queue slot, written as suggested"] = {
            "with indexes": explain_rolled_back(*suggested_query(user))
        }
    finally:
        if made:
            drop_suggested_indexes()
    return result


def explain_rolled_back(sql: str, params=None) -> dict:
    from django.db import transaction

    with transaction.atomic():
        measured = explain(sql, params)
        transaction.set_rollback(True)  # EXPLAIN ANALYZE runs the statement (locks, writes)
    return measured


SUGGESTED_INDEXES = [
    # the annotator's own slots, by task: "already judged or held by me" as an index-only hashed subplan
    "CREATE INDEX bench_slot_annotator_task ON annotation_slot (annotator_id, task_id)",
    # the annotator's current lease (a reload resumes it)
    "CREATE INDEX bench_slot_leased ON annotation_slot (annotator_id) WHERE state = 'leased'",
    # the gold tasks (a thousand among 100,000): excluded from the queue, read for gold accuracy
    "CREATE INDEX bench_task_gold ON annotation_annotationtask (id) WHERE is_gold",
    # the annotator's gold judgments (a few among thousands), read after every gold POST
    "CREATE INDEX bench_judgment_gold ON annotation_judgment (annotator_id) WHERE kind = 'gold'",
]
ANALYZED = ("annotation_slot", "annotation_annotationtask", "annotation_judgment")


def drop_suggested_indexes() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in SUGGESTED_INDEXES:
            name = statement.split()[2]
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        for table in ANALYZED:
            cursor.execute(f"ANALYZE {table}")


def create_suggested_indexes() -> bool:
    """Create the suggested indexes unless they are there (committed: an index built inside the
    measuring transaction may be unusable to it after HOT updates); True if this call made them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = ANY(%s)",
                       [[statement.split()[2] for statement in SUGGESTED_INDEXES]])
        if cursor.fetchone()[0] == len(SUGGESTED_INDEXES):
            return False
        for statement in SUGGESTED_INDEXES:
            cursor.execute(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
        for table in ANALYZED:
            cursor.execute(f"ANALYZE {table}")
    return True


def suggested_query(user) -> tuple[str, list]:
    """The regular-queue query as it could be written: the slot row alone (as the application
    does), and every exclusion as NOT IN (subquery), which PostgreSQL runs as a hashed subplan over
    a small index (the annotator's own slots and skips, the gold tasks) instead of merge joins that
    walk the whole task table and a whole slot index in task order."""
    from django.db import transaction
    from django.db.models import Q
    from django.utils import timezone

    from annotation.models import AnnotationTask, Skip, Slot, SlotKind, SlotState

    now = timezone.now()
    pool = (
        Slot.objects.filter(kind=SlotKind.REGULAR, state__in=[SlotState.OPEN, SlotState.LEASED])
        .filter(Q(state=SlotState.OPEN) | Q(leased_until__lte=now))
        .exclude(task__in=AnnotationTask.objects.filter(is_gold=True).values("pk"))
        .exclude(task__in=Slot.objects.filter(annotator=user).values("task"))
        .exclude(task__in=Skip.objects.filter(annotator=user).values("task"))
        .order_by("task_id", "pk")
        .values_list("pk", flat=True)
        .select_for_update(skip_locked=True, of=("self",))[:1]
    )
    with transaction.atomic():
        return pool.query.sql_with_params()


def measure(rounds: int, warmup: int, database: str) -> dict:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.urls import NoReverseMatch, reverse
    from django.utils import timezone

    from annotation.assignment import next_slot
    from annotation.judging import record_judgment
    from annotation.models import Judgment, Slot, SlotState

    everyone = User.objects.filter(username__startswith="bench-annotator-")
    users = list(everyone.exclude(annotator_status__paused=True).order_by("username"))
    paused = everyone.count() - len(users)
    expired = Slot.objects.filter(annotator__in=users, state=SlotState.LEASED, leased_until__gt=timezone.now()).update(
        leased_until=timezone.now() - timezone.timedelta(seconds=1))
    open_before = Slot.objects.filter(kind="regular", state="open").count()
    try:
        reverse("annotate-task")
        reverse("annotate-judgment", args=[1])
        http = True
    except NoReverseMatch:
        http = False

    counter = QueryCounter()
    results = {"service": {}, "paths": {}, "queries": {}, "http": {}, "errors": []}

    def note(name, seconds, queries, table):
        table.setdefault(name, []).append(seconds)
        results["queries"].setdefault(name, []).append(queries)

    with connection.execute_wrapper(counter):
        # service level
        for i in range(warmup + rounds):
            user = users[i % len(users)]
            slot, t_next, q_next = timed(counter, next_slot, user)
            if slot is None:
                results["errors"].append("next_slot returned None (the pool is empty)")
                break
            slugs = [d.slug for d in slot.task.candidate_set.input.judged_dimensions()]
            facts = (slot.kind, slot.shown_order, slot.task.gold_answers)
            recorded, t_judge, q_judge = timed(counter, record_judgment, user, slot.pk,
                                               answer(slugs, len(slot.shown_order), i, facts))
            if i >= warmup:
                note("next_slot()", t_next, q_next, results["service"])
                note("record_judgment()", t_judge, q_judge, results["service"])
                results["paths"].setdefault(f"next_slot() {slot.kind}", []).append(t_next)
                results["paths"].setdefault(f"record_judgment() {slot.kind}", []).append(t_judge)

        # HTTP level, through the test client
        if http:
            offset = warmup + rounds  # other annotators than the service rounds used last
            clients = {}
            for i in range(warmup + rounds):
                user = users[(offset + i) % len(users)]
                if user.pk not in clients:
                    clients[user.pk] = Client()
                    clients[user.pk].force_login(user)
            for i in range(warmup + rounds):
                user = users[(offset + i) % len(users)]
                client = clients[user.pk]
                page, t_page, q_page = timed(counter, client.get, "/annotate/")
                text = page.content.decode()
                first = SLOT_RE.search(text)
                if page.status_code != 200 or not first:
                    results["errors"].append(f"GET /annotate/ -> {page.status_code}, no task in it")
                    continue
                first = int(first.group(1))
                fragment, t_task, q_task = timed(counter, client.get, f"/annotate/task/?after={first}")
                ftext = fragment.content.decode()
                second = SLOT_RE.search(ftext)
                if fragment.status_code != 200 or not second:
                    results["errors"].append(f"GET /annotate/task/ -> {fragment.status_code}, no task in it")
                    continue
                second = int(second.group(1))
                n = int(N_RE.search(ftext).group(1))
                slugs = SLUG_RE.findall(ftext)
                image, t_image, q_image = timed(counter, client.get, f"/annotate/slots/{first}/candidates/0.img")
                size = len(b"".join(image.streaming_content)) if image.status_code == 200 else 0
                image.close()
                statuses = []
                posts = []
                for j, slot_id in enumerate((first, second)):
                    facts = slot_facts(slot_id)
                    body = json.dumps(answer(slugs, n, i + j, facts))
                    response, t_post, q_post = timed(counter, client.post, f"/annotate/slots/{slot_id}/judgment",
                                                     body, content_type="application/json")
                    statuses.append(response.status_code)
                    posts.append((t_post, q_post, facts[0]))
                if statuses != [201, 201] or image.status_code != 200 or not size:
                    results["errors"].append(
                        f"POST judgment -> {statuses}, image -> {image.status_code} ({size} bytes)"
                    )
                if i >= warmup:
                    note("GET /annotate/ (page)", t_page, q_page, results["http"])
                    note("GET /annotate/task/?after= (next task)", t_task, q_task, results["http"])
                    note("GET .../candidates/0.img", t_image, q_image, results["http"])
                    for t_post, q_post, kind in posts:
                        note("POST .../judgment", t_post, q_post, results["http"])
                        results["paths"].setdefault(f"POST judgment {kind}", []).append(t_post)
                    kind = slot_facts(second)[0]
                    results["paths"].setdefault(f"GET /annotate/task/ {kind}", []).append(t_task)

    plan_user = users[(2 * (warmup + rounds) + 7) % len(users)]
    out = {
        "database": database,
        "http": http,
        "leases_expired_first": expired,
        "paused_annotators": paused,
        "open_regular_slots_before": open_before,
        "judgments_after": Judgment.objects.count(),
        "service": {name: summary_ms(v) for name, v in results["service"].items()},
        "http_level": {name: summary_ms(v) for name, v in results["http"].items()},
        "paths": {name: summary_ms(v) for name, v in sorted(results["paths"].items())},
        "queries": {name: {"median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v)}
                    for name, v in results["queries"].items()},
        "errors": results["errors"][:20],
        "error_count": len(results["errors"]),
        "plans": plans(plan_user),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        out["size"] = cursor.fetchone()[0]
    return out


def child(args) -> None:
    from annotation_common import require_filled, setup_django

    setup_django(args.child)
    require_filled(args.child)
    drop_suggested_indexes()  # left by an interrupted run
    if args.suggested_indexes:
        create_suggested_indexes()
    try:
        result = measure(args.rounds, args.warmup, args.child)
    finally:
        drop_suggested_indexes()
    result["suggested_indexes"] = args.suggested_indexes
    print("RESULT " + json.dumps(result))


# --- parent: run each database and print the figures --------------------------------------------


def fmt(summary: dict) -> str:
    if not summary or not summary.get("n"):
        return "-"
    return f"{summary['median']:.1f} / {summary['p95']:.1f}"


def run_database(name: str, args) -> dict:
    from annotation_common import database_exists

    if name == EMPTY_DB and not database_exists(name):
        subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "annotation_data.py"),
                "--database",
                name,
                "--sets",
                "2000",
                "--judgments",
                "0",
                "--expired-leases",
                "0",
            ],
            check=True,
            cwd=REPO,
        )
    command = [sys.executable, __file__, "--child", name, "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
    if args.suggested_indexes:
        command.append("--suggested-indexes")
    done = subprocess.run(command, cwd=REPO, env=bench_environment(name), capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        sys.exit(f"measuring {name} failed")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default=f"{EMPTY_DB},{FULL_DB}", help="comma-separated, baseline first")
    parser.add_argument("--rounds", type=int, default=500, help="measured rounds (one annotator each) per database")
    parser.add_argument("--warmup", type=int, default=20, help="rounds run first and not counted")
    parser.add_argument("--plans", action="store_true", help="print every query plan in full")
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--suggested-indexes", action="store_true",
                        help="measure with the two suggested indexes in place (created first, dropped at the end)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    names = [name.strip() for name in args.databases.split(",") if name.strip()]
    print(f"annotation latency: {args.rounds} rounds (+{args.warmup} warm-up) per database, "
          f"{os.cpu_count()} CPU cores, DJANGO_DEBUG=0, Django test client (in-process)"
          + (", WITH the suggested indexes (dropped again at the end)" if args.suggested_indexes else "")
          + f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    for name in names:
        start = time.perf_counter()
        result = run_database(name, args)
        results.append(result)
        print(
            f"  {name} ({result['size']}): measured in {time.perf_counter() - start:.0f} s "
            f"(load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}); "
            f"{result['open_regular_slots_before']:,} open regular slots before, "
            f"{result['judgments_after']:,} judgments after; {result['leases_expired_first']} leftover leases "
            "expired first; "
            f"{result['paused_annotators']} paused annotators left out"
        )
        if not result["http"]:
            print("    the annotation views are not there (annotation/urls.py): service level only")
        for error in result["errors"]:
            print(f"    ERROR {error}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    header = " | ".join(f"{r['database']} median / p95 ms | queries" for r in results)
    print(f"\n| request | {header} |")
    print("|---|" + "---|---|" * len(results))
    rows = []
    for section in ("http_level", "service"):
        for name in results[-1][section]:
            rows.append((section, name))
    for section, name in rows:
        cells = []
        for r in results:
            q = r["queries"].get(name)
            queries = (
                "-"
                if not q
                else (str(q["median"]) if q["min"] == q["max"] else f"{q['median']} ({q['min']}-{q['max']})")
            )
            cells.append(f"{fmt(r[section].get(name, {}))} | {queries}")
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\n(target for the annotator's requests: p95 < {TARGET_P95_MS} ms)")
    print("\nby the kind of slot (regular queue, gold, repeat; median / p95 ms, count):")
    for r in results:
        parts = [f"{name}: {fmt(s)} (n={s['n']})" for name, s in r["paths"].items()]
        print(f"  {r['database']}: " + "; ".join(parts))

    for r in results:
        print(f"\nquery plans on {r['database']} (EXPLAIN ANALYZE; now -> with the suggested indexes):")
        for name, plan in r["plans"].items():
            now, later = plan.get("now"), plan.get("with indexes")
            line = f"  {name}: "
            line += f"{now['ms']:.1f} ms" if now else "-"
            line += f" -> {later['ms']:.1f} ms" if later else ""
            print(line)
            for label, measured in (("now", now), ("with indexes", later)):
                if not measured:
                    continue
                print(f"      {label}: " + "; ".join(measured["scans"]))
                if args.plans or (r is results[-1] and name.startswith("regular queue slot")):
                    print("\n".join("        " + line for line in measured["plan"]))
    print("\nsuggested indexes:\n" + "\n".join(f"  {statement};" for statement in SUGGESTED_INDEXES))


if __name__ == "__main__":
    main()
