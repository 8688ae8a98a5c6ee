"""Greedy word wrapping."""


def wrap(text, width):
    """Split `text` into lines of at most `width` characters.

    Words are never broken: a single word longer than `width` gets a line of its own.
    """
    if width < 1:
        raise ValueError("width must be at least 1")
    lines = []
    current = ""
    for word in text.split():
        if current and len(current) + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
