"""Find the content of the last ``\\boxed{...}`` in a text.

Both the accuracy reward (the model's final answer) and data preparation (MATH solutions, boxed ground truths) need
the *last* boxed expression with its nested braces intact, e.g. ``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``.
A regular expression cannot balance braces, hence the small scanner below. Comparing answers is math-verify's job.
"""

from __future__ import annotations

BOXED_OPENER = "\\boxed{"


def last_boxed_content(text: str) -> str | None:
    """Return what the last ``\\boxed{`` in ``text`` encloses, or ``None`` when there is none or it is never closed.

    An unclosed last box (a generation cut off mid-answer) gives ``None`` rather than an earlier box: the model's
    final answer is missing, and an earlier, abandoned answer must not be scored in its place.
    """
    start = text.rfind(BOXED_OPENER)
    if start == -1:
        return None
    depth = 1
    content_start = start + len(BOXED_OPENER)
    for position in range(content_start, len(text)):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:position]
    return None


def unbox(answer: str) -> str:
    """Return a ground truth without its ``\\boxed{}`` wrapper: data sets give answers bare (``3/4``) or boxed."""
    boxed = last_boxed_content(answer)
    return (answer if boxed is None else boxed).strip()
