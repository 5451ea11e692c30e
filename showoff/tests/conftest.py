from accounts.tests.pipeline import eager_celery, recovery_pipeline  # noqa: F401
