"""The hub's settings with one more route: a bare Django JSON view, the anchor
bench/load.py measures the hub's endpoints against, served by the same server."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "anchor_urls"
