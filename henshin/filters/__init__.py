"""Face filters: one module per family, all behind ``henshin.filters.base.Filter``."""

from henshin.filters.base import FILTERS, Filter, create_filter, register

__all__ = ["FILTERS", "Filter", "create_filter", "register"]
