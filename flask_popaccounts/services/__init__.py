# Filters and the vacation reply register their classifier with the store's sinks.
from . import filtering as _filtering  # noqa: F401
