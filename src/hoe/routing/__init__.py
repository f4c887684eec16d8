"""Level 3: preference vectors and parameter-free routing over the anchor pool."""

from hoe.routing.preferences import PreferenceLike, convex_weights, nearest, parse_preference, route

__all__ = ["PreferenceLike", "convex_weights", "nearest", "parse_preference", "route"]
