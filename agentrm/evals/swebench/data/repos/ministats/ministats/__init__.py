"""Small statistics helpers: averages, histograms and duration parsing."""

from ministats.stats import histogram, mean, median
from ministats.units import parse_duration

__all__ = ["histogram", "mean", "median", "parse_duration"]
