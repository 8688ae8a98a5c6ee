"""Title case in the style of English book titles."""

SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "in", "of", "on", "or", "the", "to"}


def title_case(text):
    """Capitalise every word except short function words such as "and" or "of"."""
    words = text.split()
    out = []
    for word in words:
        if word.lower() in SMALL_WORDS:
            out.append(word.lower())
        else:
            out.append(word[:1].upper() + word[1:].lower())
    return " ".join(out)
