from accounts.tests.fixtures import _fresh_throttles, alice, anon, as_alice, as_bob, bob  # noqa: F401
from accounts.tests.pipeline import eager_celery, recovery_pipeline  # noqa: F401
