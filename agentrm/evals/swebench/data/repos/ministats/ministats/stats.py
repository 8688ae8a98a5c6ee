"""Descriptive statistics on plain lists of numbers."""


def mean(values):
    """Arithmetic mean; raises ValueError on empty data."""
    if not values:
        raise ValueError("mean of empty data")
    return sum(values) / len(values)


def median(values):
    """The middle value of the sorted data; raises ValueError on empty data."""
    if not values:
        raise ValueError("median of empty data")
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def histogram(values, bins, lo=None, hi=None):
    """Counts of `values` in `bins` equal-width bins spanning [lo, hi].

    `lo` and `hi` default to the smallest and largest value; the last bin is closed, so a value
    equal to `hi` is counted in it.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    width = (hi - lo) / bins or 1
    counts = [0] * bins
    for value in values:
        index = int((value - lo) / width)
        if 0 <= index < bins:
            counts[index] += 1
    return counts
