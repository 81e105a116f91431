"""Peak memory of a zip import: a zip bomb against a normal small archive, measured in the same run.

    .venv/bin/python bench/zip_import_memory.py                  # about a minute
    .venv/bin/python bench/zip_import_memory.py --bomb-gib 2 --no-naive

Each archive is imported in a fresh child process through `run_archive_import`, the code a worker
runs for a zip uploaded in the admin or through the API, so the child's peak resident memory
(VmHWM; see peak_mib) is its own. The children share a SQLite database and a media folder in a temporary
folder (migrated once by the parent); "growth" is the peak minus the resident memory just before the
import (Django and the libraries loaded). Archives, built in the temporary folder:

- normal, the baseline: 8 photographs (1024x768 JPEG), their masks and prompts; imported;
- bomb: one entry of zeros (1 GiB by default; about 1 MB compressed) named bomb.png, with a mask
  and a prompt; refused;
- bomb, entry cap raised: the same archive with ONEREWARD_MAX_ZIP_ENTRY_BYTES at 8 GiB, so that
  the compression ratio (ONEREWARD_MAX_ZIP_RATIO) is what refuses it;
- forged bomb: the same archive, the bomb's local header and central directory claiming it
  unpacks to 1,000 bytes; refused;
- naive read (unless --no-naive): the bomb's entry read whole with `zipfile.ZipFile.read`, what the
  import did before entries were streamed; nothing is refused, it is the figure to compare with.

Prints figures; never judges them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1024 * 1024
PHOTOS = 8


def environment(root: Path) -> dict:
    """The platform pointed at the temporary folder: its own SQLite database, media and broker."""
    return {
        "DJANGO_SETTINGS_MODULE": "onereward.settings",
        "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
        "ONEREWARD_DATA_DIR": str(root / "var"),
        "ONEREWARD_MEDIA_ROOT": str(root / "media"),
        "CELERY_BROKER_URL": "filesystem://",
        "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status (Linux only)")


def peak_mib() -> float:
    """The child's own peak resident memory. Not ru_maxrss (getrusage): Linux carries the parent's
    peak across fork and exec into it, and the parent has Django loaded too. VmHWM is the peak of
    this process's memory since exec."""
    return status_mib("VmHWM")


# --- the archives -----------------------------------------------------------------------------


def photo_jpeg(seed: int, width: int = 1024, height: int = 768) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1), np.full_like(x, 128.0)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def mask_png(width: int = 1024, height: int = 768) -> bytes:
    from PIL import Image

    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def build_normal(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(PHOTOS):
            archive.writestr(f"photo{index}.jpg", photo_jpeg(index))
            archive.writestr(f"photo{index}_mask.png", mask_png())
            archive.writestr(f"photo{index}.txt", f"a red kite over the hill, number {index}")


def build_bomb(path: Path, gib: float) -> None:
    zeros = bytes(CHUNK)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.png", "w") as entry:  # streamed: the builder holds one chunk
            for _ in range(int(gib * 1024)):
                entry.write(zeros)
        archive.writestr("bomb_mask.png", mask_png())
        archive.writestr("bomb.txt", "a red kite")


# --- one measurement, in a child ---------------------------------------------------------------


def child(case: str, archive: Path) -> None:
    import django

    django.setup()
    from django.core.files import File
    from django.core.files.storage import default_storage

    from inputs.archive_import import run_archive_import
    from inputs.models import InputImport

    before = status_mib("VmRSS")
    start = time.perf_counter()
    if case == "naive-read":
        with zipfile.ZipFile(archive) as opened:
            size = len(opened.read("bomb.png"))
        result = f"read {size / 1024**3:.2f} GiB whole"
    else:
        with archive.open("rb") as handle:
            stored = default_storage.save(f"imports/bench-{case}/archive.zip", File(handle))
        job = InputImport.objects.create(archive=stored, original_name=archive.name, defaults={"task": "image_fill"})
        run_archive_import(job)
        job.refresh_from_db()
        if job.status == "done":
            result = f"done: {job.created_inputs.count()} inputs"
        else:
            first = job.problems[0] if job.problems else {"entry": "", "problem": job.error}
            result = f"{job.status}: {first['entry']}: {first['problem']}"
    seconds = time.perf_counter() - start
    print(json.dumps({"result": result, "seconds": seconds, "before": before, "peak": peak_mib()}))


def measure(case: str, archive: Path, env: dict) -> dict:
    slug = "-".join(re.findall(r"\w+", case))
    done = subprocess.run([sys.executable, __file__, "--child", slug, str(archive)], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bomb-gib", type=float, default=1.0, help="gibibytes of zeros in the bomb's entry")
    parser.add_argument("--no-naive", action="store_true", help="skip reading the bomb whole (needs its size)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ARCHIVE"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    root = Path(tempfile.mkdtemp(prefix="zip-import-memory-"))
    env = {**os.environ, **environment(root)}
    os.environ.update(environment(root))
    import django

    django.setup()
    from django.core.management import call_command

    from tests.inputs.import_helpers import forge_declared_size

    call_command("migrate", verbosity=0)
    normal, bomb, forged = root / "normal.zip", root / "bomb.zip", root / "forged.zip"
    build_normal(normal)
    build_bomb(bomb, args.bomb_gib)
    forged.write_bytes(forge_declared_size(bomb.read_bytes(), "bomb.png", 1000))
    cases = {
        "normal": (normal, {}),
        "bomb": (bomb, {}),
        "bomb, entry cap raised": (bomb, {"ONEREWARD_MAX_ZIP_ENTRY_BYTES": str(8 * 1024**3)}),
        "forged bomb": (forged, {}),
    }
    if not args.no_naive:
        cases["naive read"] = (bomb, {})
    figures = {case: measure(case, archive, {**env, **extra}) for case, (archive, extra) in cases.items()}

    print(f"archives: normal {normal.stat().st_size / 1e6:.1f} MB ({PHOTOS} photographs 1024x768), "
          f"bomb {bomb.stat().st_size / 1e6:.1f} MB holding {args.bomb_gib:g} GiB of zeros")
    print(f"{'case':<22} {'seconds':>8} {'peak MiB':>9} {'growth MiB':>11} {'x normal':>9}  result")
    baseline = figures["normal"]
    for case, figure in figures.items():
        growth = figure["peak"] - figure["before"]
        print(f"{case:<22} {figure['seconds']:>8.2f} {figure['peak']:>9.0f} {growth:>11.0f} "
              f"{figure['peak'] / baseline['peak']:>8.2f}x  {figure['result']}")
    if args.keep:
        print(f"kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
