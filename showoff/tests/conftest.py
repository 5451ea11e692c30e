from accounts.tests.fixtures import alice, anon, as_alice, bob  # noqa: F401
