"""Where video files live, through Django's storage API.

`MEDIA_STORAGE=local` (the default) keeps them under `MEDIA_STORAGE_LOCATION` (or `MEDIA_ROOT`)
and serves them through `/api/media/files/<token>`, a signed link that expires like an S3
presigned URL (with HTTP Range support, which video players need to seek). `MEDIA_STORAGE=s3`
uses django-storages' S3 backend against any S3-compatible endpoint (AWS, MinIO, R2, ...); the
API then hands out presigned URLs, or plain ones under `MEDIA_S3_CUSTOM_DOMAIN` (a CDN).

The storage is built from the `MEDIA_*` settings rather than `STORAGES`, so production's
`STORAGES` (static files) and media never step on each other.

Public images (avatars) live in the same storage, under `PUBLIC_PREFIXES`, behind stable
unsigned URLs on this site (`/media/<name>`, `serve_public` in media/apis.py): the file itself
with local storage, a redirect to a fresh presigned (or CDN) URL with S3. Their names change with
each upload, so those URLs can be cached forever and never expire inside an event or a cached
profile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage
from django.urls import reverse
from django.utils.deconstruct import deconstructible

_SALT = "media.file"
_cache: dict[tuple, Storage] = {}


def _config() -> tuple:
    return (
        settings.MEDIA_STORAGE,
        str(Path(settings.BASE_DIR) / settings.MEDIA_STORAGE_LOCATION)
        if settings.MEDIA_STORAGE_LOCATION else str(settings.MEDIA_ROOT),
        settings.MEDIA_S3_BUCKET,
        settings.MEDIA_S3_ENDPOINT_URL,
        settings.MEDIA_S3_REGION,
        settings.MEDIA_S3_ACCESS_KEY_ID,
        settings.MEDIA_S3_SECRET_ACCESS_KEY,
        settings.MEDIA_S3_PREFIX,
        settings.MEDIA_S3_CUSTOM_DOMAIN,
        settings.MEDIA_URL_EXPIRE_SECONDS,
    )


def _build(config: tuple) -> Storage:
    (kind, location, bucket, endpoint, region, key_id, secret, prefix, domain,
     expire) = config
    if kind == "local":
        return FileSystemStorage(location=location, base_url=None)
    if kind == "s3":
        if not bucket:
            raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET (and, outside "
                                       "AWS, MEDIA_S3_ENDPOINT_URL).")
        from storages.backends.s3 import S3Storage

        return S3Storage(
            bucket_name=bucket,
            endpoint_url=endpoint or None,
            region_name=region or None,
            # Empty: boto3's own chain (environment, instance role, ~/.aws).
            access_key=key_id or None,
            secret_key=secret or None,
            location=prefix,
            custom_domain=domain or None,
            querystring_auth=not domain,
            querystring_expire=expire,
            file_overwrite=False,
            default_acl=None,
            # Path-style addressing works on every S3-compatible server; SigV4 everywhere
            # (SigV2 is deprecated and refused by newer regions and servers).
            addressing_style="path" if endpoint else None,
            signature_version="s3v4",
        )
    raise ImproperlyConfigured(f"MEDIA_STORAGE={kind!r}: use 'local' or 's3'.")


def video_storage() -> Storage:
    config = _config()
    storage = _cache.get(config)
    if storage is None:
        storage = _cache[config] = _build(config)
    return storage


def is_local(storage: Storage) -> bool:
    return isinstance(storage, FileSystemStorage)


# Only files under these folders are public (served without a signature).
PUBLIC_PREFIXES = ("avatars/",)


@deconstructible
class PublicMediaStorage(Storage):
    """The storage of public images (a model field's `storage`): reads and writes go to the
    media storage as configured at call time (local or S3; tests change it per test), URLs
    are this site's stable `/media/<name>`."""

    def _open(self, name, mode="rb"):
        return video_storage().open(name, mode)

    def _save(self, name, content):
        return video_storage().save(name, content)

    def get_available_name(self, name, max_length=None):
        return video_storage().get_available_name(name, max_length=max_length)

    def delete(self, name):
        video_storage().delete(name)

    def exists(self, name):
        return video_storage().exists(name)

    def size(self, name):
        return video_storage().size(name)

    def url(self, name):
        return public_url(name)


def public_url(name: str, *, request=None) -> str:
    """The stable URL of a public file (`PUBLIC_PREFIXES`), absolute when a request is given."""
    if not name.startswith(PUBLIC_PREFIXES):
        raise ValueError(f"{name!r} is not under a public folder {PUBLIC_PREFIXES}.")
    path = reverse("public-media", kwargs={"name": name})
    return request.build_absolute_uri(path) if request is not None else path


def file_url(name: str, *, request=None) -> str:
    """A URL a player can fetch without credentials, valid MEDIA_URL_EXPIRE_SECONDS."""
    storage = video_storage()
    if not is_local(storage):
        return storage.url(name)
    token = signing.dumps(name, salt=_SALT, compress=True)
    path = reverse("media:file", kwargs={"token": token})
    return request.build_absolute_uri(path) if request is not None else path


def name_from_token(token: str) -> str:
    """The storage name a signed token grants; raises signing.BadSignature (or
    SignatureExpired) when it was tampered with or is too old."""
    return signing.loads(token, salt=_SALT, max_age=settings.MEDIA_URL_EXPIRE_SECONDS)


def save_file(storage: Storage, name: str, path: Path) -> str:
    with open(path, "rb") as fh:
        return storage.save(name, fh)


def local_copy(storage: Storage, name: str, workdir: Path) -> Path:
    """A local path to read `name` from: the file itself on local storage, a copy otherwise."""
    if is_local(storage):
        return Path(storage.path(name))
    target = workdir / ("source" + os.path.splitext(name)[1])
    with storage.open(name, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return target


def delete_tree(storage: Storage, prefix: str) -> int:
    """Delete every file under `prefix`; returns how many. Missing folders are fine."""
    try:
        dirs, files = storage.listdir(prefix)
    except FileNotFoundError:
        return 0
    count = 0
    for name in files:
        storage.delete(f"{prefix}/{name}")
        count += 1
    for sub in dirs:
        count += delete_tree(storage, f"{prefix}/{sub}")
    if is_local(storage):
        try:
            os.rmdir(storage.path(prefix))
        except OSError:
            pass
    return count
