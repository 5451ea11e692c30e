from accounts.tests.fixtures import alice, anon, as_alice, bob  # noqa: F401
from accounts.tests.pipeline import eager_celery, recovery_pipeline  # noqa: F401
from media.tests.conftest import clip_dir, make_clip  # noqa: F401
