"""`video-processing`: uploads, transcoding, thumbnails (key: video id).

Every event carries `owner_id` so notification consumers can tell the owner without a lookup.
Storage names are relative to the media storage (local folder or S3 bucket); clients get
signed URLs from the API, never from events.
"""

from __future__ import annotations

from outbox.catalogue import ID, TEXT, EventType, obj, register

SECONDS = {"type": "number", "minimum": 0}
DIMENSION = {"type": "integer", "minimum": 1}
STORAGE_NAME = {"type": "string", "minLength": 1, "maxLength": 500}

register(
    EventType(
        type="video.uploaded",
        topic="video-processing",
        key="video_id",
        description="A source was stored and probed; the media consumer records its job.",
        schema=obj(
            {
                "video_id": ID,
                "owner_id": ID,
                "size_bytes": {"type": "integer", "minimum": 1},
                "duration_seconds": SECONDS,
                "width": DIMENSION,
                "height": DIMENSION,
                "container": {"type": "string", "maxLength": 100},
                "video_codec": {"type": "string", "maxLength": 50},
                "has_audio": {"type": "boolean"},
            }
        ),
    ),
    EventType(
        type="video.transcoded",
        topic="video-processing",
        key="video_id",
        description="Every rendition of the ladder is stored; the video is ready.",
        schema=obj(
            {
                "video_id": ID,
                "owner_id": ID,
                "attempt": {"type": "integer", "minimum": 1},
                "duration_seconds": SECONDS,
                "renditions": {
                    "type": "array",
                    "minItems": 1,
                    "items": obj(
                        {
                            "name": {"type": "string", "maxLength": 20},
                            "width": DIMENSION,
                            "height": DIMENSION,
                            "bitrate": {"type": "integer", "minimum": 0},
                            "size_bytes": {"type": "integer", "minimum": 1},
                            "storage_name": STORAGE_NAME,
                        }
                    ),
                },
            }
        ),
    ),
    EventType(
        type="video.thumbnail_generated",
        topic="video-processing",
        key="video_id",
        description="The poster (JPEG) and the preview frames are stored.",
        schema=obj(
            {
                "video_id": ID,
                "owner_id": ID,
                "poster_storage_name": STORAGE_NAME,
                "width": DIMENSION,
                "height": DIMENSION,
                "preview_count": {"type": "integer", "minimum": 0},
            }
        ),
    ),
    EventType(
        type="video.failed",
        topic="video-processing",
        key="video_id",
        description="Transcoding gave up (permanent error or attempts exhausted).",
        schema=obj(
            {
                "video_id": ID,
                "owner_id": ID,
                "reason": TEXT,
                "attempts": {"type": "integer", "minimum": 0},
            }
        ),
    ),
)
