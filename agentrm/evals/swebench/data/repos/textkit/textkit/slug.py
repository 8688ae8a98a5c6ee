"""URL slugs."""

import re
import unicodedata


def slugify(text, sep="-"):
    """Return a lower-case ASCII slug of `text`.

    Accents are dropped (``Café`` -> ``cafe``) and every character that is not a letter or a
    digit is replaced by `sep`.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]", sep, text.lower())
