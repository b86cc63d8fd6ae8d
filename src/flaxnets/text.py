"""Wording shared by the commands' messages: counts with the noun in the right number.

"1 classes" or "1 steps per epoch" in a summary reads as a bug, and each message writing its
own `'s' if n != 1 else ''` gets some of them wrong; every count in a user-facing line goes
through `plural`. Kept free of heavy imports: `flaxnets --help` and `report` load it.
"""

from __future__ import annotations


def plural_of(word: str) -> str:
    """The plural of an English noun: class -> classes, batch -> batches, entry -> entries,
    epoch -> epochs (a hard "ch"), step -> steps."""
    if word.endswith(("s", "x", "z", "sh", "tch")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    return word + "s"


def noun(count, word: str) -> str:
    """`word` in the number `count` asks for, without the count: noun(4, "device") -> "devices"
    (for "4 cpu devices", where an adjective sits between them)."""
    return word if count == 1 else plural_of(word)


def plural(count, word: str, *, spec: str = "") -> str:
    """`count` and `word` in agreement: plural(1, "class") -> "1 class", plural(4, "class") ->
    "4 classes", plural(1281167, "image", spec=",") -> "1,281,167 images". `word` may be a phrase
    whose first word is the noun ("step per epoch" -> "steps per epoch"). A count that is not
    exactly 1 (0, 2, 0.5, 1.5) takes the plural, as in "0.5 epochs"."""
    first, _, rest = word.partition(" ")
    return f"{count:{spec}} {noun(count, first)}" + (f" {rest}" if rest else "")
