"""Probing real files with PyAV and choosing the ladder from the source."""

from __future__ import annotations

import pytest

from media.ffmpeg import choose_ladder, rendition_command
from media.probe import MediaInfo, ProbeError, probe


def _info(width: int, height: int, rotation: int = 0) -> MediaInfo:
    return MediaInfo(container="mov,mp4,m4a,3gp,3g2,mj2", duration=10.0, coded_width=width,
                     coded_height=height, rotation=rotation, video_codec="h264",
                     audio_codec="aac", frame_rate=30.0, bitrate=None, video_frames=300)


def test_probe_reads_duration_size_codecs_and_rotation(make_clip):
    plain = probe(make_clip("320x240", 2))
    rotated = probe(make_clip("320x240", 2, rotation=90))

    assert (plain.duration, plain.width, plain.height, plain.rotation) == (2.0, 320, 240, 0)
    assert (plain.video_codec, plain.audio_codec, plain.frame_rate, plain.video_frames) == (
        "h264", "aac", 25.0, 50)
    assert (rotated.coded_width, rotated.coded_height, rotated.rotation) == (320, 240, 90)
    assert (rotated.width, rotated.height) == (240, 320)


def test_probe_refuses_playlists_and_non_videos(tmp_path):
    playlist = tmp_path / "movie.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                        "file:///etc/passwd\n#EXT-X-ENDLIST\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (playlist, empty):
        with pytest.raises(ProbeError, match="not a video we can read"):
            probe(path)


def test_ladder_never_upscales_and_follows_the_short_side():
    assert [(r.name, r.width, r.height, r.crf, r.maxrate_kbps)
            for r in choose_ladder(_info(1280, 720))] == [
        ("240p", 426, 240, 28, 400), ("360p", 640, 360, 26, 800),
        ("480p", 854, 480, 24, 1400), ("720p", 1280, 720, 23, 2800)]
    # a phone's portrait 1080x1920 gets every rung, portrait
    assert [(r.name, r.width, r.height) for r in choose_ladder(_info(1080, 1920))] == [
        ("240p", 240, 426), ("360p", 360, 640), ("480p", 480, 854), ("720p", 720, 1280),
        ("1080p", 1080, 1920)]
    # rotation counts: coded 1920x1080 shown upright
    assert [(r.width, r.height) for r in choose_ladder(_info(1920, 1080, rotation=270))][-1] == (
        1080, 1920)
    # a 4:3 source at 600x450 stops at 360p
    assert [r.name for r in choose_ladder(_info(600, 450))] == ["240p", "360p"]
    # below the lowest rung: one rendition at the source's own (even) size
    assert [(r.name, r.width, r.height) for r in choose_ladder(_info(175, 99))] == [
        ("98p", 174, 98)]


def test_rendition_command_forces_the_probed_demuxer_and_faststart(tmp_path, settings):
    settings.MEDIA_X264_PRESET = "veryfast"
    (rung,) = choose_ladder(_info(426, 240))
    cmd = rendition_command(tmp_path / "in", tmp_path / "out.mp4", rung, _info(426, 240))
    joined = " ".join(cmd)
    assert "-f mov -i" in joined
    assert "-protocol_whitelist file" in joined
    assert "-c:v libx264 -preset veryfast -crf 28 -maxrate 400k -bufsize 800k" in joined
    assert "-c:a aac -b:a 64k" in joined
    assert "-movflags +faststart -f mp4" in joined
