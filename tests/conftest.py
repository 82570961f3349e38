"""Hypothesis profiles: ``make test`` is deterministic, exploring is opt-in.

The default profile derandomizes Hypothesis (the same examples on every run), so CI on a clean
clone cannot fail on a draw no one has seen. ``pytest --hypothesis-profile=explore`` draws new
random examples on every run (300 per test, where a test does not fix its own count in the
default profile) to hunt for failures; every failure found that way becomes an ``@example`` on
the test, so the fixed set in ``make test`` grows with each one.
"""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, max_examples=300)
settings.load_profile("deterministic")
