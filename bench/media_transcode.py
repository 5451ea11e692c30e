"""Transcoding speed per rung, and upload-to-ready latency through the whole pipeline.

    .venv/bin/python bench/media_transcode.py [--seconds 10] [--runs 3] [--preset veryfast]

Needs the local services (`scripts/services up`). Makes a 10 s 1280x720 30 fps clip (testsrc2 +
sine), then measures:

- per rung of the ladder (240p..720p): encode time with the production command, as a multiple
  of real time, and against the baseline of merely decoding the same source (`vs_decode`);
- end to end: from the upload's HTTP response to `status=ready`, through `run_relay`,
  `consume video-processing` and a Celery worker (each its own process, as in production),
  against the baseline of the same ffmpeg work run back to back in-process
  (`overhead_ratio` = end to end / pure ffmpeg).

Uses its own database (`showoff_bench_media`), topic prefix, Celery queue and storage folder;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.get("BENCH_MEDIA_DATABASE_NAME", "showoff_bench_media")


def setup(storage: Path, queue: str, prefix: str, preset: str) -> dict[str, str]:
    import psycopg

    base_url = os.environ.get("DATABASE_URL", "postgres://showoff@127.0.0.1:5432/showoff")
    server = base_url.rpartition("/")[0]
    with psycopg.connect(base_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [DB]).fetchone():
            conn.execute(f'create database "{DB}"')
    env = {
        "DATABASE_URL": f"{server}/{DB}",
        "DJANGO_SETTINGS_MODULE": "showoff.settings.base",
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_TOPIC_PARTITIONS": "1",
        "MEDIA_STORAGE": "local",
        "MEDIA_STORAGE_LOCATION": str(storage),
        "MEDIA_CELERY_QUEUE": queue,
        "MEDIA_X264_PRESET": preset,
        "LOG_LEVEL": "WARNING",
        "RELAY_POLL_INTERVAL": "0.2",
        "CONSUMER_POLL_TIMEOUT": "0.2",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("kafka", "create-topics", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    return env


def make_clip(path: Path, seconds: int) -> None:
    from media.ffmpeg import ffmpeg_binary

    subprocess.run([
        ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path),
    ], check=True)


def per_rung(src: Path, work: Path) -> dict:
    from django.conf import settings

    from media import ffmpeg
    from media.probe import probe

    info = probe(src)
    started = time.monotonic()
    subprocess.run([ffmpeg.ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-i", str(src),
                    "-f", "null", "-"], check=True)
    decode = time.monotonic() - started
    rungs = []
    for rung in ffmpeg.choose_ladder(info):
        out = work / f"{rung.name}.mp4"
        seconds = ffmpeg.run(ffmpeg.rendition_command(src, out, rung, info), timeout=3600)
        made = probe(out)
        size = out.stat().st_size
        rungs.append({
            "name": rung.name, "width": made.width, "height": made.height, "crf": rung.crf,
            "seconds": round(seconds, 3),
            "x_realtime": round(info.duration / seconds, 2),
            "vs_decode": round(seconds / decode, 2),
            "bitrate_kbps": round(size * 8 / made.duration / 1000, 1),
            "size_bytes": size,
        })
    top = ffmpeg.choose_ladder(info)[-1]
    started = time.monotonic()
    ffmpeg.run(ffmpeg.frame_command(src, work / "poster.jpg", info, at=1.0, width=top.width,
                                    height=top.height), timeout=60)
    short = min(settings.MEDIA_PREVIEW_SHORT_SIDE, info.width, info.height)
    pw, ph = ffmpeg.scaled(info.width, info.height, short)
    for i in range(settings.MEDIA_PREVIEW_FRAMES):
        at = info.duration * (i + 0.5) / settings.MEDIA_PREVIEW_FRAMES
        ffmpeg.run(ffmpeg.frame_command(src, work / f"p{i}.jpg", info, at=at, width=pw,
                                        height=ph), timeout=60)
    thumbs = time.monotonic() - started
    return {
        "source": {"width": info.width, "height": info.height, "duration": info.duration,
                   "fps": info.frame_rate},
        "baseline_decode": {"seconds": round(decode, 3),
                            "x_realtime": round(info.duration / decode, 2)},
        "rungs": rungs,
        "thumbnails_seconds": round(thumbs, 3),
        "pure_ffmpeg_seconds": round(sum(r["seconds"] for r in rungs) + thumbs, 3),
    }


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def _tails(logs: Path) -> str:
    return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace")
                                                      .splitlines()[-15:])
                     for log in sorted(logs.glob("*.log")))


def end_to_end(src: Path, env: dict[str, str], queue: str, runs: int, logs: Path) -> dict:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from media.models import Video

    py = sys.executable
    procs = [
        spawn([py, "manage.py", "run_relay"], env, logs / "relay.log"),
        spawn([py, "manage.py", "consume", "video-processing", "--consumer", "media"], env,
              logs / "consume.log"),
        spawn([py, "-m", "celery", "-A", "showoff", "worker", "-Q", queue, "--concurrency", "1",
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", f"{queue}@%h", "--loglevel", "WARNING"], env, logs / "worker.log"),
    ]
    try:
        user, _ = get_user_model().objects.get_or_create(
            username="bench-media", defaults={"email": "bench-media@example.com"})
        client = APIClient()
        client.force_authenticate(user)
        times = []
        for i in range(runs + 1):  # the first run warms the processes up and is not counted
            with open(src, "rb") as fh:
                response = client.post("/api/media/videos/", {"file": fh}, format="multipart")
            t0 = time.monotonic()
            assert response.status_code == 201, response.content
            video_id = response.json()["id"]
            deadline = t0 + 600
            while True:
                status = Video.objects.filter(pk=video_id).values_list("status", flat=True)[0]
                if status in ("ready", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"video {video_id} not ready after 600s\n{_tails(logs)}")
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            if status != "ready":
                raise RuntimeError(f"video {video_id} failed\n{_tails(logs)}")
            if i:
                times.append(round(elapsed, 3))
        return {"runs_seconds": times, "median_seconds": statistics.median(times)}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 15)
                p.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, 9)


def cleanup(prefix: str, queue: str) -> None:
    import redis
    from django.conf import settings

    from relay.kafka import make_admin
    from relay.testing import delete_topics

    admin = make_admin("bench-admin")
    delete_topics([t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)])
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue, f"_kombu.binding.{queue}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default=os.environ.get("MEDIA_X264_PRESET", "veryfast"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-media-"))
    queue = f"bench-media-{uuid.uuid4().hex[:8]}"
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    try:
        env = setup(work / "storage", queue, prefix, args.preset)
        src = work / "source-720p.mp4"
        make_clip(src, args.seconds)
        result = {"preset": args.preset, "cpu_count": os.cpu_count()}
        result.update(per_rung(src, work))
        e2e = end_to_end(src, env, queue, args.runs, work)
        e2e["pure_ffmpeg_seconds"] = result["pure_ffmpeg_seconds"]
        e2e["overhead_ratio"] = round(e2e["median_seconds"] / result["pure_ffmpeg_seconds"], 2)
        e2e["x_realtime"] = round(args.seconds / e2e["median_seconds"], 2)
        result["end_to_end"] = e2e
        print(json.dumps(result, indent=2))
    finally:
        try:
            cleanup(prefix, queue)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
