"""Small text utilities: slugs, word wrapping and title case."""

from textkit.case import title_case
from textkit.slug import slugify
from textkit.wrap import wrap

__all__ = ["slugify", "title_case", "wrap"]
