from accounts.tests.fixtures import alice, anon, as_alice, as_bob, bob  # noqa: F401
