"""The ffmpeg side: which renditions to make, and the commands that make them.

ffmpeg comes from the pinned `imageio-ffmpeg` wheel (a static build with libx264), so `pip
install` is the whole install; `MEDIA_FFMPEG_BINARY` may name another one.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from .probe import CONTAINER_OPTIONS, FFMPEG_INPUT_FORMAT, MediaInfo


class FFmpegError(RuntimeError):
    """ffmpeg failed or ran too long: worth another attempt."""


@cache
def _wheel_ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_binary() -> str:
    return settings.MEDIA_FFMPEG_BINARY or _wheel_ffmpeg()


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    crf: int
    maxrate_kbps: int
    audio_kbps: int


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def scaled(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale (width, height) so its short side is `short_side`, keeping the aspect, even sizes."""
    if width <= height:
        return _even(short_side), _even(height * short_side / width)
    return _even(width * short_side / height), _even(short_side)


def choose_ladder(info: MediaInfo, ladder: list[dict] | None = None) -> list[Rung]:
    """The rungs at or below the source's short side (never upscale), by display size.

    A source smaller than the lowest rung still gets one rendition at its own size, so every
    ready video plays.
    """
    ladder = ladder if ladder is not None else settings.MEDIA_RENDITION_LADDER
    short = min(info.width, info.height)
    rungs = []
    for spec in sorted(ladder, key=lambda s: s["short_side"]):
        if spec["short_side"] <= short:
            w, h = scaled(info.width, info.height, spec["short_side"])
            # Rounding to even must not add a pixel the source does not have.
            w, h = min(w, info.width - info.width % 2), min(h, info.height - info.height % 2)
            rungs.append(Rung(spec["name"], w, h, spec["crf"], spec["maxrate_kbps"],
                              spec["audio_kbps"]))
    if not rungs:
        spec = min(ladder, key=lambda s: s["short_side"])
        # Even sizes (4:2:0 chroma) rounding down: never a pixel more than the source.
        w, h = max(2, info.width - info.width % 2), max(2, info.height - info.height % 2)
        rungs.append(Rung(f"{min(w, h)}p", w, h, spec["crf"], spec["maxrate_kbps"],
                          spec["audio_kbps"]))
    return rungs


def _input_args(src: Path, info: MediaInfo, *, seek: float | None = None) -> list[str]:
    args = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    # The demuxer is the one the probe accepted, never ffmpeg's guess from the content.
    args += ["-format_whitelist", CONTAINER_OPTIONS["format_whitelist"],
             "-protocol_whitelist", CONTAINER_OPTIONS["protocol_whitelist"],
             "-f", FFMPEG_INPUT_FORMAT[info.container]]
    if seek is not None:
        args += ["-ss", f"{seek:.3f}"]
    return args + ["-i", str(src)]


def rendition_command(src: Path, dst: Path, rung: Rung, info: MediaInfo) -> list[str]:
    gop = max(1, int(round(min(info.frame_rate or 30.0, settings.MEDIA_MAX_FPS) * 2)))
    cmd = [ffmpeg_binary(), *_input_args(src, info)]
    cmd += ["-map", "0:v:0", "-map", "0:a:0?", "-map_metadata", "-1", "-sn", "-dn"]
    # ffmpeg applies the source's rotation before the filters, so the scale is in display size.
    cmd += ["-vf", f"scale={rung.width}:{rung.height}:flags=bicubic,setsar=1,format=yuv420p",
            "-fpsmax", str(settings.MEDIA_MAX_FPS)]
    cmd += ["-c:v", "libx264", "-preset", settings.MEDIA_X264_PRESET, "-crf", str(rung.crf),
            "-maxrate", f"{rung.maxrate_kbps}k", "-bufsize", f"{rung.maxrate_kbps * 2}k",
            "-profile:v", "high", "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-threads", str(settings.MEDIA_FFMPEG_THREADS)]
    cmd += ["-c:a", "aac", "-b:a", f"{rung.audio_kbps}k", "-ac", "2"]
    cmd += ["-movflags", "+faststart", "-f", "mp4", str(dst)]
    return cmd


def frame_command(src: Path, dst: Path, info: MediaInfo, *, at: float, width: int,
                  height: int) -> list[str]:
    cmd = [ffmpeg_binary(), *_input_args(src, info, seek=at)]
    cmd += ["-map", "0:v:0", "-frames:v", "1", "-an", "-sn", "-dn", "-map_metadata", "-1",
            "-vf", f"scale={width}:{height}:flags=bicubic,setsar=1",
            "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", str(dst)]
    return cmd


def run(cmd: list[str], *, timeout: float, tick: Callable[[], None] | None = None,
        tick_every: float = 10.0) -> float:
    """Run ffmpeg, calling `tick()` every `tick_every` seconds (the job's heartbeat).

    Returns the wall time. `tick` may raise to stop the run (the lease was lost): ffmpeg is
    killed first. A non-zero exit or a timeout raises FFmpegError with ffmpeg's last words.
    """
    started = time.monotonic()
    # stderr goes to a file: a pipe nobody reads while waiting could fill up and stall ffmpeg.
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errfile)
        next_tick = started + tick_every
        try:
            while True:
                try:
                    proc.wait(timeout=max(0.05, min(1.0, next_tick - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if now - started > timeout:
                    raise FFmpegError(f"ffmpeg ran longer than {timeout:.0f}s and was stopped")
                if tick is not None and now >= next_tick:
                    tick()
                    next_tick = now + tick_every
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        errfile.seek(0)
        stderr = errfile.read()[-4000:].decode(errors="replace")
    if proc.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        # The first lines name the cause; the last one says what ffmpeg gave up on.
        said = lines[:2] + lines[-1:] if len(lines) > 3 else lines
        raise FFmpegError(f"ffmpeg exited with {proc.returncode}: {' | '.join(said)}"[:1000])
    return time.monotonic() - started
