"""Settings for bench/posts_create.py's server without event writing (the baseline).

Only the benchmark uses this module; production settings have no switch to drop events.
"""

from showoff.settings.base import *  # noqa: F403

POSTS_PUBLISH_EVENTS = False
