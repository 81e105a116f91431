"""Load test of the annotation pages: 50 annotators judging as fast as they can through gunicorn.

    .venv/bin/python bench/annotation_load.py                                  # 50 clients, 60 s, empty, full db
    .venv/bin/python bench/annotation_load.py --databases onereward_bench      # the full database only
    .venv/bin/python bench/annotation_load.py --clients 20 --duration 30 --workers 2 --threads 4
    .venv/bin/python bench/annotation_load.py --images                         # also fetch the N candidate images

Starts gunicorn (gthread) serving onereward.wsgi against the bench database on 127.0.0.1 with
DJANGO_DEBUG=0, signs in `--clients` bench annotators (sessions made with Django's session engine,
as a login would; the password form is checked once), then runs one thread per annotator for
`--duration` seconds, each with its own keep-alive connection (urllib3), in a closed loop without
think time:

  GET  /annotate/task/?after=<previous slot>   the next-task fragment (leases a slot); parse slot id, N, dimensions
  GET  /annotate/slots/<slot>/candidates/<p>.img  for every position (only with --images)
  POST /annotate/slots/<slot>/judgment         a complete answer (best/worst per dimension), expecting 201;
                                               gold tasks answered right (see SlotFacts), others at random
  (for --retry-share of the rounds) the same POST again: a retried submit, expecting 200 and nothing new

Prints requests per second, errors (anything but the expected status, and exceptions), latency
percentiles per request kind, then checks in the database that every acknowledged submission is
stored exactly once and nothing else was: one Judgment per submission id, no two judgments for an
(annotator, task, kind), no slot judged twice, no slot handed to two annotators, judgment counts
on the touched tasks right. Stops by itself: the clients stop at the deadline and gunicorn is
stopped (its own process id) whatever happens. Load generator, gunicorn and PostgreSQL share the
machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_common import (  # noqa: E402
    EMPTY_DB,
    FULL_DB,
    PASSWORD,
    REPO,
    bench_environment,
    careful_picks,
    database_exists,
    percentile,
    setup_django,
)

SLOT_RE = re.compile(r'data-slot="(\d+)"')
N_RE = re.compile(r'data-n="(\d+)"')
SLUG_RE = re.compile(r'class="ann-dim" data-slug="([^"]+)"')
STATE_RE = re.compile(r'data-state="(\w+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn, started here and stopped here by its process id."""

    def __init__(self, database: str, port: int, workers: int, threads: int):
        self.port = port
        env = bench_environment(database)
        self.log = open(REPO / "var" / "bench" / "gunicorn.log", "w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "onereward.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--timeout",
                "60",
                "--log-level",
                "warning",
                "--backlog",
                "256",
            ],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib3

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see var/bench/gunicorn.log")
            try:
                response = urllib3.request(
                    "GET", f"http://127.0.0.1:{self.port}/accounts/login/", retries=False, timeout=2
                )
                if response.status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("gunicorn did not answer in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group this script started
                self.process.wait(timeout=10)
        self.log.close()


def sessions_for(users) -> dict[int, str]:
    """A signed-in session per annotator, made by Django's session engine as login() would."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    engine = import_module(settings.SESSION_ENGINE)
    keys = {}
    for user in users:
        session = engine.SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys[user.pk] = session.session_key
    return keys


def form_login(port: int, username: str) -> tuple[int, float]:
    """Sign in through the login form once (status after redirect, seconds): the real path works."""
    import urllib3

    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False, timeout=30)
    page = pool.request("GET", "/accounts/login/")
    cookie = re.search(r"csrftoken=([^;]+)", page.headers.get("Set-Cookie", "")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.data.decode()).group(1)
    start = time.perf_counter()
    response = pool.request("POST", "/accounts/login/", fields={"username": username, "password": PASSWORD,
                                                                 "csrfmiddlewaretoken": token},
                            encode_multipart=False, headers={"Cookie": f"csrftoken={cookie}"}, redirect=False)
    return response.status, time.perf_counter() - start


class SlotFacts:
    """(kind, shown order, gold answers) of a slot, from one database connection of its own shared
    by the clients: the bench annotators answer gold tasks right, as careful annotators do (random
    answers would get them paused by the quality control). Looked up outside the timed requests."""

    def __init__(self, database: str):
        import psycopg
        from annotation_common import database_url

        self.connection = psycopg.connect(database_url(database), autocommit=True)
        self.lock = threading.Lock()

    def __call__(self, slot_id: int):
        with self.lock:
            return self.connection.execute(
                "SELECT s.kind, s.shown_order, t.gold_answers FROM annotation_slot s "
                "JOIN annotation_annotationtask t ON t.id = s.task_id WHERE s.id = %s", [slot_id]).fetchone()

    def close(self):
        self.connection.close()


class Client(threading.Thread):
    def __init__(self, index, port, session_key, deadline, args, record, facts):
        super().__init__(daemon=True, name=f"annotator-{index}")
        import urllib3

        self.index = index
        self.facts = facts
        self.paused = 0
        self.deadline = deadline
        self.args = args
        self.record = record
        self.rng = random.Random(index)
        csrf = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
        self.headers = {"Cookie": f"sessionid={session_key}; csrftoken={csrf}"}
        self.post_headers = {**self.headers, "X-CSRFToken": csrf, "Content-Type": "application/json"}
        self.pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True, retries=False,
                                               timeout=urllib3.Timeout(connect=10, read=60))
        self.created: list[str] = []  # submission ids acknowledged with 201
        self.retried: list[str] = []  # ... and acknowledged again with 200
        self.slots: list[int] = []
        self.no_task = 0

    def request(self, kind, method, url, body=None, expect=(200,)):
        start = time.perf_counter()
        try:
            response = self.pool.request(method, url, body=body, headers=self.post_headers if body else self.headers,
                                         redirect=False, preload_content=True)
            status, data = response.status, response.data
        except Exception as exc:  # noqa: BLE001 - every failure counts as an error
            status, data = None, repr(exc).encode()
        elapsed = time.perf_counter() - start
        ok = status in expect
        self.record(kind, start, elapsed, status, ok, None if ok else data[:300])
        return status, data, ok

    def run(self):
        previous = ""
        while time.perf_counter() < self.deadline:
            status, data, ok = self.request("GET next task", "GET", f"/annotate/task/?after={previous}")
            if not ok:
                time.sleep(0.2)
                continue
            text = data.decode()
            slot = SLOT_RE.search(text)
            if not slot:
                state = STATE_RE.search(text)
                if state and state.group(1) == "paused":
                    self.paused += 1
                else:
                    self.no_task += 1
                time.sleep(1.0)
                continue
            slot_id, n, slugs = int(slot.group(1)), int(N_RE.search(text).group(1)), SLUG_RE.findall(text)
            self.slots.append(slot_id)
            if self.args.images:
                for position in range(n):
                    if time.perf_counter() >= self.deadline:
                        break
                    self.request("GET candidate image", "GET", f"/annotate/slots/{slot_id}/candidates/{position}.img")
            if time.perf_counter() >= self.deadline:
                break  # the lease stays open; the next run expires it
            best = self.rng.randrange(n)
            worst = (best + self.rng.randrange(1, n)) % n
            picks = {slug: {"best": best, "worst": worst} for slug in slugs}
            if slugs and self.rng.random() < 0.1:
                picks[slugs[-1]] = {"discarded": True}
            kind, shown_order, gold_answers = self.facts(slot_id)
            picks = careful_picks(kind, shown_order, gold_answers, picks)
            submission = str(uuid.uuid4())
            body = json.dumps({"submission_id": submission, "dwell_ms": self.rng.randint(3000, 60000), "picks": picks})
            label = "POST judgment" if kind != "gold" else "POST judgment (gold)"
            status, data, ok = self.request(label, "POST", f"/annotate/slots/{slot_id}/judgment", body, expect=(201,))
            if ok:
                self.created.append(submission)
                if self.rng.random() < self.args.retry_share and time.perf_counter() < self.deadline:
                    status, data, again = self.request("POST judgment (retry)", "POST",
                                                       f"/annotate/slots/{slot_id}/judgment", body, expect=(200,))
                    if again:
                        self.retried.append(submission)
            previous = str(slot_id)


def check_database(clients, users, started_at) -> list[tuple[str, object, bool]]:
    """What the database says about the run; (check, value, as expected)."""
    from django.db import connection
    from django.db.models import Count, F, Q

    from annotation.models import AnnotationTask, Judgment, SlotKind, SlotState

    created = [s for c in clients for s in c.created]
    retried = [s for c in clients for s in c.retried]
    checks = []
    stored = Judgment.objects.filter(submission_id__in=created).count()
    checks.append(("submissions acknowledged with 201", len(created), True))
    checks.append(("... of them stored as a Judgment", stored, stored == len(created)))
    checks.append(("distinct submission ids acknowledged", len(set(created)), len(set(created)) == len(created)))
    checks.append(("retried submits acknowledged with 200 (stored nothing new)", len(retried), True))
    since = Judgment.objects.filter(annotator__in=users, submitted_at__gte=started_at)
    made = since.count()
    checks.append(("judgments the run's annotators made during the run", made, made == len(created)))
    own = since.filter(slot__annotator=F("annotator"), slot__state=SlotState.DONE, slot__task=F("task"),
                       slot__kind=F("kind")).count()
    checks.append(("... whose slot is done, theirs, same task and kind", own, own == made))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM (SELECT 1 FROM annotation_judgment GROUP BY annotator_id, task_id, kind "
                       "HAVING count(*) > 1) d")
        duplicates = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM annotation_judgment GROUP BY slot_id HAVING count(*) > 1) d"
        )
        slot_twice = cursor.fetchone()[0]
    checks.append(("(annotator, task, kind) with more than one judgment (whole table)", duplicates, duplicates == 0))
    checks.append(("slots with more than one judgment (whole table)", slot_twice, slot_twice == 0))
    holders = defaultdict(set)
    for c in clients:
        for slot in c.slots:
            holders[slot].add(c.index)
    shared = sum(1 for owners in holders.values() if len(owners) > 1)
    checks.append(("slots handed to more than one annotator during the run", shared, shared == 0))
    from annotation.models import AnnotatorStatus

    paused = AnnotatorStatus.objects.filter(user__in=users, paused=True).count()
    checks.append(("the run's annotators paused by the quality control", paused, paused == 0))
    tasks = list(since.values_list("task_id", flat=True).distinct())
    wrong = (AnnotationTask.objects.filter(pk__in=tasks)
             .annotate(regular=Count("judgments", filter=Q(judgments__kind=SlotKind.REGULAR)))
             .exclude(judgments_done=F("regular")).count())
    checks.append(
        (
            f"touched tasks whose judgments_done differs from their regular judgments (of {len(tasks)})",
            wrong,
            wrong == 0,
        )
    )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default=f"{EMPTY_DB},{FULL_DB}",
                        help="comma-separated, run one after the other (baseline first), each with its own gunicorn")
    parser.add_argument("--database", help=argparse.SUPPRESS)  # one database, in this process
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--images", action="store_true", help="also GET the N candidate images of every task")
    parser.add_argument("--retry-share", type=float, default=0.02, help="share of judgments posted twice")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    if args.database:
        run_one(args)
        return
    results = []
    for name in [n.strip() for n in args.databases.split(",") if n.strip()]:
        if name == EMPTY_DB and not database_exists(name):
            subprocess.run([sys.executable, str(REPO / "bench" / "annotation_data.py"), "--database", name, "--sets",
                            "2000", "--judgments", "0", "--expired-leases", "0"], check=True, cwd=REPO)
        command = [
            sys.executable,
            __file__,
            "--database",
            name,
            "--clients",
            str(args.clients),
            "--duration",
            str(args.duration),
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--retry-share",
            str(args.retry_share),
            "--port",
            str(args.port),
        ] + (["--images"] if args.images else [])
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        for line in child.stdout:
            if line.startswith("RESULT "):
                results.append(json.loads(line[len("RESULT "):]))
            else:
                print(line, end="", flush=True)
        if child.wait() != 0:
            sys.exit(f"the run on {name} failed")
        print()
    if len(results) > 1:
        print(
            "| database | requests/s | judgments/s | errors | next task median / p95 ms | POST median / p95 ms | "
            "checks |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['database']} | {r['rps']:.1f} | {r['jps']:.1f} | {r['errors']} | {r['next'][0]:.0f} / "
                f"{r['next'][1]:.0f} "
                f"| {r['post'][0]:.0f} / {r['post'][1]:.0f} | "
                f"{'all consistent' if not r['failed'] else str(r['failed']) + ' failed'} |"
            )


def run_one(args) -> None:
    setup_django(args.database)
    from annotation_common import require_filled

    require_filled(args.database)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from annotation.models import Judgment, Slot, SlotState

    users = list(User.objects.filter(username__startswith="bench-annotator-")
                 .exclude(annotator_status__paused=True).order_by("-username")[:args.clients])
    if len(users) < args.clients:
        sys.exit(f"only {len(users)} bench annotators who are not paused")
    expired = Slot.objects.filter(annotator__in=users, state=SlotState.LEASED, leased_until__gt=timezone.now()).update(
        leased_until=timezone.now() - timezone.timedelta(seconds=1))
    keys = sessions_for(users)
    open_before = Slot.objects.filter(kind="regular", state="open").count()
    judgments_before = Judgment.objects.count()
    connection.close()  # the load runs without this process touching the database

    port = args.port or free_port()
    print(f"annotation load: {args.clients} clients for {args.duration:.0f} s against gunicorn "
          f"({args.workers} workers x {args.threads} threads, gthread) on 127.0.0.1:{port}, database {args.database}; "
          f"{os.cpu_count()} CPU cores shared by load generator, gunicorn and PostgreSQL; load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"  {open_before:,} open regular slots, {judgments_before:,} judgments; {expired} leftover leases expired "
        "first"
        f"{'; clients also fetch the N candidate images' if args.images else ''}"
    )
    server = Server(args.database, port, args.workers, args.threads)
    records = []
    lock = threading.Lock()

    def record(kind, start, elapsed, status, ok, error):
        with lock:
            records.append((kind, start, elapsed, status, ok, error))

    clients = []
    facts = SlotFacts(args.database)
    try:
        server.wait_ready()
        status, seconds = form_login(port, users[0].username)
        print(f"  login form check: POST /accounts/login/ -> {status} in {seconds * 1000:.0f} ms (password hashing)")
        started_at = timezone.now()
        cpu_before = time.process_time()
        start = time.perf_counter()
        deadline = start + args.duration
        clients = [Client(i, port, keys[user.pk], deadline, args, record, facts) for i, user in enumerate(users)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=max(1.0, deadline - time.perf_counter() + 90))
        stuck = sum(1 for c in clients if c.is_alive())
        elapsed = time.perf_counter() - start
        generator_cpu = time.process_time() - cpu_before
    finally:
        server.stop()
        facts.close()
    import resource

    server_cpu = sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f) for f in ("ru_utime", "ru_stime"))

    print(f"  load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{stuck} clients still waiting at the end" if stuck else
          f"  load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    errors = [r for r in records if not r[4]]
    judged = sum(len(c.created) for c in clients)
    cores = os.cpu_count() * elapsed
    print(f"  CPU: load generator {generator_cpu:.0f} s ({generator_cpu / cores:.0%} of the machine), gunicorn "
          f"{server_cpu:.0f} s ({server_cpu / cores:.0%}, start-up included); the rest went to PostgreSQL and others")
    print(f"\n{len(records):,} requests in {elapsed:.1f} s: {len(records) / elapsed:.1f} requests/s, "
          f"{judged / elapsed:.1f} judgments/s ({judged:,} judgments); errors: {len(errors)}; "
          f"'no task' answers: {sum(c.no_task for c in clients)}; 'paused' answers: {sum(c.paused for c in clients)}")
    by_kind = defaultdict(list)
    for r in records:
        by_kind[r[0]].append(r[2] * 1000)
    print("\n| request | count | per s | median ms | p90 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in sorted(by_kind):
        v = by_kind[kind]
        print(f"| {kind} | {len(v):,} | {len(v) / elapsed:.1f} | {percentile(v, .5):.0f} | {percentile(v, .9):.0f} | "
              f"{percentile(v, .95):.0f} | {percentile(v, .99):.0f} | {max(v):.0f} |")
    if errors:
        print("\nerrors by kind and status:")
        for (kind, status), count in Counter((r[0], r[3]) for r in errors).most_common():
            example = next(r[5] for r in errors if r[0] == kind and r[3] == status)
            print(f"  {kind} -> {status}: {count} (e.g. {example!r})")

    print("\ndatabase checks:")
    connection.connect()
    problems = 0
    for name, value, fine in check_database(clients, users, started_at):
        problems += not fine
        print(f"  {'ok ' if fine else 'BAD'} {name}: {value:,}" if isinstance(value, int) else f"  {name}: {value}")
    print(f"  {problems} check(s) failed" if problems else "  all consistent")

    def pair(kind):
        v = by_kind.get(kind) or [float("nan")]
        return [percentile(v, .5), percentile(v, .95)]

    print("RESULT " + json.dumps({"database": args.database, "rps": len(records) / elapsed, "jps": judged / elapsed,
                                  "errors": len(errors), "next": pair("GET next task"), "post": pair("POST judgment"),
                                  "failed": problems}))


if __name__ == "__main__":
    main()
