from accounts.tests.fixtures import alice, anon, as_alice, as_bob, bob  # noqa: F401
from accounts.tests.pipeline import eager_celery, recovery_pipeline  # noqa: F401
