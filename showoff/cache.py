"""The cache backend: Django's Redis cache, scoped to its KEY_PREFIX.

Django's `RedisCache.clear()` is FLUSHDB: it would wipe every other user of the Redis database
(another environment sharing it, a parallel test run). Here `clear()` deletes only the keys
under this cache's prefix; with no prefix it is Django's FLUSHDB.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class PrefixScopedRedisCache(RedisCache):
    def clear(self) -> bool:
        if not self.key_prefix:
            return super().clear()
        client = self._cache.get_client(None, write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{_glob_escape(self.key_prefix)}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        return True
