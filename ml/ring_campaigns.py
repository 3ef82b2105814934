"""How the simulator's rings run their campaigns (docs/simulator.md, "Campaigns"): three styles, each
harder to catch than the one before, so the campaign detector and the risk model are measured on rings
that do not all post one text from one link in one burst.

- `copy`: every member posts the ring's text as it is, within 30 minutes.
- `varied`: every member posts its own variant of the text (words dropped, added, swapped, re-cased or
  spelt with look-alike characters), rotating its links, phone numbers and e-mail addresses over three
  variants, within two hours.
- `sleeper`: as `varied`, spread over eight hours, from accounts that post ordinary content the rest of
  the time (their history shows nothing until the campaign).

Ring r runs style RING_STYLES[r % 3] (ml/world.py). The variation draws from its own random stream, so the rest of a
simulated day is drawn as before."""

from __future__ import annotations

import re

import numpy as np

from ml.matching.text import find_artifacts
from ml.world import RING_STYLES

# How far a campaign's posts spread after its start, as a multiple of the copy style's 30 minutes.
SPREAD = dict(zip(RING_STYLES, (1, 4, 16), strict=True))
ARTIFACT_VARIANTS = 3

_FILLERS = ("now", "today", "pls", "asap", "!!", "guys", "100%", "hurry", "omg", "fr", "legit", "dont miss")
_LOOKALIKE = str.maketrans({"o": "0", "e": "3", "a": "@", "i": "1", "s": "$"})


def campaign_texts(rng: np.random.Generator, text: str, style: str, members: int) -> list[str]:
    """The texts `members` posts of one campaign carry: the ring's `text` for the copy style, else one
    variant per post, its links, numbers and addresses rotated over ARTIFACT_VARIANTS variants."""
    if style == "copy":
        return [text] * members
    return [vary(rng, rotate_artifacts(text, int(rng.integers(0, ARTIFACT_VARIANTS)))) for _ in range(members)]


def rotate_artifacts(text: str, variant: int) -> str:
    """`text` with each link, phone number and e-mail address changed into its `variant` (0 = as it is): a
    digit added to a link's host or an address's local part, a phone number's last two digits shifted."""
    if variant == 0:
        return text
    out, last = [], 0
    for start, end in find_artifacts(text).spans:
        value = text[start:end]
        out += [text[last:start], _rotated(value, variant)]
        last = end
    return "".join(out) + text[last:]


def _rotated(value: str, variant: int) -> str:
    found = find_artifacts(value)
    if found.emails:
        local, _, domain = value.partition("@")
        return f"{local}{variant}@{domain}"
    if found.phones and not found.urls:
        digits = [i for i, c in enumerate(value) if c.isdigit()][-2:]
        shifted = f"{(int(''.join(value[i] for i in digits)) + 37 * variant) % 100:02d}"
        chars = list(value)
        for i, d in zip(digits, shifted, strict=True):
            chars[i] = d
        return "".join(chars)
    scheme, sep, rest = value.rpartition("://") if "://" in value else ("", "", value)
    www = rest[:4] if rest.lower().startswith("www.") else ""
    host, dot, tail = rest[len(www) :].partition(".")
    return f"{scheme}{sep}{www}{host}{variant}{dot}{tail}"


def vary(rng: np.random.Generator, text: str) -> str:
    """One post's variant of `text`: two to four word edits, links, numbers and addresses kept whole."""
    spans = find_artifacts(text).spans
    tokens = list(re.finditer(r"\S+", text))
    if not tokens:
        return text
    words = [t.group() for t in tokens]
    keep = {i for i, t in enumerate(tokens) if any(s < t.end() and t.start() < e for s, e in spans)}
    for _ in range(int(rng.integers(2, 5))):
        free = [i for i in range(len(words)) if i not in keep]
        edit = int(rng.integers(0, 5))
        if edit == 0 or not free:  # a filler word
            at = int(rng.integers(0, len(words) + 1))
            words.insert(at, _FILLERS[int(rng.integers(0, len(_FILLERS)))])
            keep = {i + (i >= at) for i in keep}
        elif edit == 1 and len(free) > 3:  # a word dropped
            at = free[int(rng.integers(0, len(free)))]
            del words[at]
            keep = {i - (i > at) for i in keep}
        elif edit == 2 and len(free) > 1:  # two neighbouring words swapped
            at = free[int(rng.integers(0, len(free) - 1))]
            if at + 1 not in keep and at + 1 < len(words):
                words[at], words[at + 1] = words[at + 1], words[at]
        elif edit == 3:  # shouted
            at = free[int(rng.integers(0, len(free)))]
            words[at] = words[at].upper()
        else:  # look-alike characters
            at = free[int(rng.integers(0, len(free)))]
            words[at] = words[at].translate(_LOOKALIKE)
    return " ".join(words)
