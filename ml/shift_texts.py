"""The texts the simulator's world shifts post (SimConfig.world_shift; docs/simulator.md, "World
shifts"): words and phrases no corpus holds, drawn from the caller's random stream so the same
seed gives the same shifted days."""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.text import normalise, text_hash

# The "spam_campaign" shift's posts: engagement bait pointing at a profile ("link in bio"), a kind of
# spam none of the corpora hold, assembled from parts so that nearly every post is a new text.
_BAIT_OPENERS = ("omg", "hey", "ngl", "honestly", "okay so", "not gonna lie", "lowkey", "no way")
_BAIT_NAMES = ("babe", "hun", "bestie", "sis", "king", "queen", "friend", "love")
_BAIT_BODIES = (
    "your pics are so cute, come see mine",
    "I just started a new page and it would mean a lot if you looked",
    "this changed my whole month",
    "I found something you need to see before it's gone",
    "my mentor showed me how to make it work from my phone",
    "early members are getting in first right now",
    "I'm bored, come talk to me",
    "I posted something special for my followers only",
)
_BAIT_CALLS = ("it's in my bio", "ask me how", "dm me the word", "look at my story", "add me", "check my page")
_BAIT_WORDS = ("moonrise", "velvet", "orbit", "bloom", "nova", "ember", "lumen", "halo")
_BAIT_EMOJI = ("\U0001f60d", "\u2728", "\U0001f64f", "\U0001f440", "\U0001f495", "\U0001f525", "\U0001f60a")
# The "slang" shift: profanity and violent words used as praise, which a model trained on older
# text reads as abuse although the posts are benign.
SLANG = (
    "this is so fucking good",
    "shit goes hard",
    "damn this slaps",
    "you absolute menace lmao",
    "ngl that's sick af",
    "killing it fr, savage",
    "bitch this is iconic",
    "this goes crazy, no cap",
)


def pick(rng: np.random.Generator, words: tuple[str, ...], n: int) -> pl.Series:
    return pl.Series(np.array(words)[rng.integers(0, len(words), size=n)], dtype=pl.String)


def bait_texts(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` engagement-bait posts of the "spam_campaign" shift, nearly every one a new text."""
    word = pick(rng, _BAIT_WORDS, n) + pl.Series(rng.integers(10, 100, size=n)).cast(pl.String)
    parts = pl.DataFrame(
        {
            "o": pick(rng, _BAIT_OPENERS, n),
            "n": pick(rng, _BAIT_NAMES, n),
            "b": pick(rng, _BAIT_BODIES, n),
            "e": pick(rng, _BAIT_EMOJI, n),
            "c": pick(rng, _BAIT_CALLS, n),
            "w": word,
        }
    )
    return parts.select(pl.format("{} {} {} {} {} @{}", "o", "n", "b", "e", "c", "w").alias("text"))["text"].to_numpy()


def text_hashes(text: np.ndarray) -> np.ndarray:
    """ml.text.text_hash of each normalised text, as the platform fingerprints a post."""
    return np.array([text_hash(normalise(t)) for t in text.tolist()], dtype=object)
