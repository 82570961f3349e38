"""Hypothesis profiles: ``make test`` is deterministic, exploring is opt-in.

The default profile derandomizes Hypothesis (the same examples on every run), so CI on a clean
clone cannot fail on a draw no one has seen. ``pytest --hypothesis-profile=explore`` draws new
random examples on every run to hunt for failures; a failure found that way becomes an
``@example`` on the test.
"""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")
