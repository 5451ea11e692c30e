"""Probing a file's content with PyAV (the wheel's ffmpeg has no ffprobe).

The file's name and the client's content type are never trusted: a file is a video when a
whitelisted demuxer opens it, it has a video stream, its index fits inside the file, every packet
demuxes and its first frame decodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

# Demuxers a source may use. Anything else (playlists such as HLS or concat, image formats, raw
# streams) is refused before ffmpeg acts on it: some demuxers open other files or URLs.
ALLOWED_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
)
FORMAT_WHITELIST = ",".join(ALLOWED_FORMATS)
CONTAINER_OPTIONS = {"format_whitelist": FORMAT_WHITELIST, "protocol_whitelist": "file"}
# The ffmpeg demuxer name to force when transcoding a probed source.
FFMPEG_INPUT_FORMAT = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mov",
    "matroska,webm": "matroska",
    "avi": "avi",
    "mpegts": "mpegts",
}
EXTENSIONS = {
    "mov,mp4,m4a,3gp,3g2,mj2": ".mp4",
    "matroska,webm": ".mkv",
    "avi": ".avi",
    "mpegts": ".ts",
}


class ProbeError(ValueError):
    """The file is not a video we can read; the message is meant for the uploader."""


@dataclass(frozen=True)
class MediaInfo:
    container: str
    duration: float
    coded_width: int
    coded_height: int
    rotation: int  # degrees, as the display matrix says (0, 90, 180, 270)
    video_codec: str
    audio_codec: str | None
    frame_rate: float | None
    bitrate: int | None
    video_frames: int
    # Pixel aspect: anamorphic sources (DV, some broadcast files) have non-square pixels.
    sample_aspect: Fraction = Fraction(1)

    @property
    def _square(self) -> tuple[int, int]:
        """Coded size in square pixels: 720x480 at 8:9 is shown 640x480."""
        w, h = self.coded_width, self.coded_height
        if self.sample_aspect > 1:
            w = int(round(w * self.sample_aspect))
        elif self.sample_aspect < 1:
            h = int(round(h / self.sample_aspect))
        return w, h

    @property
    def width(self) -> int:
        """Display width: a 90° rotated 1920x1080 stream is shown 1080 wide."""
        w, h = self._square
        return h if self.rotation in (90, 270) else w

    @property
    def height(self) -> int:
        w, h = self._square
        return w if self.rotation in (90, 270) else h

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _seconds(value, time_base) -> float:
    return float(value * time_base) if value is not None and time_base else 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Open, demux and check `path`; raise ProbeError with a reason a person can act on."""
    try:
        container = av.open(str(path), container_options=CONTAINER_OPTIONS, timeout=30)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        raise ProbeError(
            "The file is not a video we can read (it may be another kind of file, or cut off). "
            "Upload an MP4, MOV, WebM or MKV video."
        ) from None
    with container:
        if container.format.name not in ALLOWED_FORMATS:
            raise ProbeError(f"Videos in the {container.format.name!r} format are not accepted. "
                             "Upload an MP4, MOV, WebM or MKV video.")
        if not container.streams.video:
            raise ProbeError("The file has no video stream (is it an audio file?).")
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if container.streams.audio else None
        if not vstream.codec_context.width or not vstream.codec_context.height:
            raise ProbeError("The video stream has no picture size; the file is damaged.")

        # An MP4 cut off after its index (moov at the front) still opens: its index then
        # points past the end of the file.
        entries = vstream.index_entries
        if entries is not None and len(entries):
            end = max(e.pos + e.size for e in entries)
            if end > os.path.getsize(path):
                raise ProbeError("The video is truncated (the upload was cut off); upload it "
                                 "again.")

        last_end = 0.0
        first_ts: float | None = None
        frames = 0
        try:
            for packet in container.demux(vstream):
                if packet.size == 0 or packet.pts is None:
                    continue
                t = _seconds(packet.pts, packet.time_base)
                first_ts = t if first_ts is None else min(first_ts, t)
                last_end = max(last_end, t + _seconds(packet.duration or 0, packet.time_base))
                frames += 1
        except av.FFmpegError:
            raise ProbeError("The video is damaged: its data cannot be read to the end.")
        if frames == 0:
            raise ProbeError("The video stream has no frames.")
        measured = last_end - (first_ts or 0.0)
        declared = container.duration / av.time_base if container.duration else None
        if declared and measured < declared - max(0.5, 0.1 * declared):
            raise ProbeError("The video is truncated (the upload was cut off); upload it again.")

        container.seek(0)
        rotation = 0
        try:
            for frame in container.decode(vstream):
                rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                break
            else:
                raise ProbeError("No frame of the video can be decoded.")
        except av.FFmpegError:
            raise ProbeError("The video's frames cannot be decoded; the file is damaged or uses "
                             "a codec we do not support.")

        rate: Fraction | None = vstream.average_rate or vstream.guessed_rate
        sar = vstream.sample_aspect_ratio or vstream.codec_context.sample_aspect_ratio
        sar = Fraction(sar) if sar and 0.1 < sar < 10 else Fraction(1)
        return MediaInfo(
            container=container.format.name,
            duration=round(declared if declared else measured, 3),
            coded_width=vstream.codec_context.width,
            coded_height=vstream.codec_context.height,
            rotation=rotation if rotation in (0, 90, 180, 270) else 0,
            video_codec=vstream.codec_context.name,
            audio_codec=astream.codec_context.name if astream is not None else None,
            frame_rate=round(float(rate), 3) if rate else None,
            bitrate=container.bit_rate or None,
            video_frames=frames,
            sample_aspect=sar,
        )
