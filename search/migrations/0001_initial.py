"""Search indexes: pg_trgm, trigram indexes on users' names, a full-text column and index on
posts (search/selectors.py reads them).

They live here, not in the accounts and posts models, because search owns them and no model
code reads them: `posts_post.search_vector` is a stored generated column PostgreSQL keeps
itself, so a post's SELECT elsewhere never carries it. Indexes are built CONCURRENTLY so a
big table keeps taking writes (adding the stored column still rewrites posts_post once).
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

POST_VECTOR = "to_tsvector('english'::regconfig, COALESCE(text, ''))"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0002_profile_and_phone_verification"),
        ("posts", "0002_hidden_at_and_author_id_index"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunSQL(
            f"ALTER TABLE posts_post ADD COLUMN search_vector tsvector "
            f"GENERATED ALWAYS AS ({POST_VECTOR}) STORED",
            "ALTER TABLE posts_post DROP COLUMN search_vector",
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS post_search ON posts_post "
            "USING gin (search_vector) WHERE deleted_at IS NULL",
            "DROP INDEX CONCURRENTLY IF EXISTS post_search",
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS user_username_trgm ON accounts_user "
            "USING gin (lower(username) gin_trgm_ops)",
            "DROP INDEX CONCURRENTLY IF EXISTS user_username_trgm",
        ),
        migrations.RunSQL(
            # Prefixes shorter than a trigram (one or two letters) use this one.
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS user_username_prefix ON accounts_user "
            "(lower(username) text_pattern_ops)",
            "DROP INDEX CONCURRENTLY IF EXISTS user_username_prefix",
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS user_display_name_trgm ON accounts_user "
            "USING gin (lower(display_name) gin_trgm_ops)",
            "DROP INDEX CONCURRENTLY IF EXISTS user_display_name_trgm",
        ),
    ]
