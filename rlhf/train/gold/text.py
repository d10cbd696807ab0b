"""Reading a free-text response: its words, numbers, list items, spelled-out letters, refusals
and language. The heuristics the gold judge (`rlhf.train.gold.verdicts`) is built on, each
documented where it is defined.

Every function here takes text through `normalise` first (lower case, curly quotes and unicode
dashes made plain), so "I Can’t" and "i can't" read the same.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass

_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2212": "-",  # minus sign
        "\u2010": "-",
        "\u2011": "-",
        "\u2013": "-",
        "\u2014": "-",
    }
)


def normalise(text: str) -> str:
    return text.translate(_PLAIN).lower()


# A word: letters or digits, with inner apostrophes or hyphens ("don't", "twenty-five": one word).
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def contains_word(text: str, word: str, *, plurals: bool = False) -> bool:
    """Whether `word` occurs as a whole word (with `plurals`, also with -s or -es)."""
    suffix = "(?:e?s)?" if plurals else ""
    return (
        re.search(rf"(?<!\w){re.escape(normalise(word))}{suffix}(?!\w)", normalise(text))
        is not None
    )


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs, not as part of a longer word ("pins" is not in "spins")."""
    return re.search(rf"(?<!\w){re.escape(normalise(phrase))}(?!\w)", normalise(text)) is not None


# --- Numbers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A number written in a text, and where: text[start:end] of the normalised text."""

    value: int | float
    start: int
    end: int


_UNITS = dict(
    zip(words("zero one two three four five six seven eight nine"), range(10), strict=True)
)
_TEENS = dict(
    zip(
        words("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"),
        range(10, 20),
        strict=True,
    )
)
_TENS = dict(
    zip(
        words("twenty thirty forty fifty sixty seventy eighty ninety"),
        range(20, 100, 10),
        strict=True,
    )
)
# A '-' is a sign only where no letter or digit comes right before it: "17-25" is two numbers.
_DIGITS = re.compile(r"(?:(?<!\w)-)?\d+(?:,\d{3})*(?:\.\d+)?")
_LETTERS = re.compile(r"[a-z]+")
_WORD_GAP = re.compile(r"[\s-]*")  # what may separate the words of one number: "twenty-five"
_SIGN_WORD = re.compile(r"(?<!\w)(negative|minus)\s+$")
# Between two numbers, an operator makes the first an operand: "17 plus 25", "3x4", "17 - 25".
_OPERATOR_GAP = re.compile(r"\s*(?:plus|minus|times|multiplied by|divided by|[-+*/×x÷])\s*")


def numbers(text: str) -> list[Number]:
    """The numbers of a text in order: digits ("42", "-8", "1,000", "2.5") and English number
    words up to 999 ("forty-two", "one hundred and five"); "negative" before a number makes it
    negative, and so does "minus" unless a number comes right before it ("20 minus 8" is a
    subtraction, "is minus 8" a negative number)."""
    text = normalise(text)
    found = sorted(
        [_digit_number(match) for match in _DIGITS.finditer(text)] + _word_numbers(text),
        key=lambda number: number.start,
    )
    signed: list[Number] = []
    for number in found:
        sign = _SIGN_WORD.search(text, 0, number.start)
        if sign and (sign.group(1) == "negative" or not _follows(text, signed, sign.start())):
            number = Number(-number.value, sign.start(), number.end)
        signed.append(number)
    return signed


def _follows(text: str, earlier: list[Number], position: int) -> bool:
    """Whether the last of the earlier numbers ends right before `position` (blanks between)."""
    return bool(earlier) and not text[earlier[-1].end : position].strip()


def _digit_number(match: re.Match[str]) -> Number:
    digits = match.group().replace(",", "")
    value = float(digits) if "." in digits else int(digits)
    return Number(value, match.start(), match.end())


def _word_numbers(text: str) -> list[Number]:
    tokens = list(_LETTERS.finditer(text))
    found = []
    index = 0
    while index < len(tokens):
        parsed = _number_words(text, tokens, index)
        if parsed is None:
            index += 1
            continue
        value, after = parsed
        found.append(Number(value, tokens[index].start(), tokens[after - 1].end()))
        index = after
    return found


def _number_words(text: str, tokens: list[re.Match[str]], index: int) -> tuple[int, int] | None:
    """The value of the number words starting at tokens[index], and the index after them."""

    def joined(before: int) -> bool:  # tokens[before] and the next are words of one number
        return before + 1 < len(tokens) and bool(
            _WORD_GAP.fullmatch(text, tokens[before].end(), tokens[before + 1].start())
        )

    def word(at: int) -> str:
        return tokens[at].group()

    def below_hundred(at: int) -> tuple[int, int] | None:
        if word(at) in _TENS:
            if joined(at) and word(at + 1) in _UNITS and word(at + 1) != "zero":
                return _TENS[word(at)] + _UNITS[word(at + 1)], at + 2
            return _TENS[word(at)], at + 1
        value = _TEENS.get(word(at), _UNITS.get(word(at)))
        return None if value is None else (value, at + 1)

    first = below_hundred(index)
    if first is None:
        return None
    value, after = first
    if not (1 <= value <= 9 and joined(after - 1) and word(after) == "hundred"):
        return first
    value, after = value * 100, after + 1
    rest_at = after + 1 if joined(after - 1) and word(after) == "and" else after
    rest = below_hundred(rest_at) if joined(rest_at - 1) else None
    return (value + rest[0], rest[1]) if rest else (value, after)


# Where a response states its answer: right after "is", "are", "=", ":" ... ("17 plus 25 is 42",
# "Answer: 42") or right before "is larger" and its kin ("41 is larger than 14").
_ANSWER_BEFORE = re.compile(
    r"(?:(?<!\w)(?:is|are|was|equals|makes|gives)|=|:)\s*(?:(?:exactly|just|only|simply)\s+)?$"
)
_ANSWER_AFTER = re.compile(r"\s+is\s+(?:the\s+)?(?:larger|bigger|greater|higher|smaller|lower)\b")


def answer_number(text: str) -> Number | None:
    """The number a response gives as its answer, by one rule: the last number at an answer
    marker (right after "is", "are", "was", "equals", "makes", "gives", "=" or ":", optionally
    through "exactly", "just", "only" or "simply"; or right before "is larger", "is smaller" and
    their kin), else the last number. An operand ("17" and "25" in "17 plus 25") is never the
    answer: "What is 17 plus 25? 42" answers 42, not the 17 after "is"; "17 plus 25 is 42, not
    41" answers 42. None when the text has no number."""
    text = normalise(text)
    found = numbers(text)
    candidates = [
        number
        for number, following in itertools.pairwise(found)
        if not _is_operand(text, number, following)
    ] + found[-1:]
    marked = [
        number
        for number in candidates
        if _ANSWER_BEFORE.search(text[max(0, number.start - 40) : number.start])
        or _ANSWER_AFTER.match(text, number.end)
    ]
    return (marked or candidates or [None])[-1]


def _is_operand(text: str, number: Number, following: Number) -> bool:
    gap = text[number.end : following.start]
    # "17 -25": the '-' was read as the second number's sign.
    return bool(_OPERATOR_GAP.fullmatch(gap)) or (not gap.strip() and following.value < 0)


def only_number(text: str) -> Number | None:
    """The number when the text is that number and nothing else ("42", "Forty-two.")."""
    text = normalise(text).strip().rstrip(".!")
    found = numbers(text)
    if len(found) == 1 and found[0].start == 0 and found[0].end == len(text):
        return found[0]
    return None


# --- Lists ---------------------------------------------------------------------------------

_BULLET = re.compile(r"^(?:[-*•·]|\d+[.)]|[a-z][.)])\s+")
_ITEM_SEPARATOR = re.compile(r",|;|/|\band\b|\bor\b")
_SENTENCE_END = re.compile(r"[.!?:](?:\s+|$)")
_ARTICLE = re.compile(r"^(?:a|an|the|some)\s+")
_EDGE_PUNCTUATION = " \t.,;:!?\"'()[]*"


def list_items(text: str) -> list[str]:
    """The items of a list answer, normalised (lower case, no bullets, articles or edge
    punctuation). On several lines: the bulleted or numbered lines where there are some ("Sure!"
    above them is not an item), else every line but one ending with ":" (a heading). On one
    line: the sentence, or the text after a colon, with the most separators (commas,
    semicolons, slashes, "and", "or"), split at them: "Here are three colours: red, blue and
    green." is ["red", "blue", "green"]."""
    lines = [line.strip() for line in normalise(text).splitlines() if line.strip()]
    bulleted = [line for line in lines if _BULLET.match(line)]
    lines = bulleted or [line for line in lines if not line.endswith(":")]
    if len(lines) > 1:
        raw = [_BULLET.sub("", line) for line in lines]
    elif lines:
        segments = _SENTENCE_END.split(_BULLET.sub("", lines[0]))
        raw = _ITEM_SEPARATOR.split(max(segments, key=lambda s: len(_ITEM_SEPARATOR.findall(s))))
    else:
        raw = []
    items = [_ARTICLE.sub("", item.strip(_EDGE_PUNCTUATION)) for item in raw]
    return [item for item in items if item]


def vocabulary_form(item: str, vocabulary: frozenset[str]) -> str | None:
    """The vocabulary word an item names, allowing a plural ("drums", "peaches", "cherries")."""
    forms = [item, item[:-1], item[:-2], item[:-3] + "y"] if len(item) > 3 else [item]
    return next((form for form in forms if form in vocabulary), None)


# --- Spelling ------------------------------------------------------------------------------

# Single letters joined by hyphens ("g-a-r-d-e-n", "g - a - r"), or by spaces or commas.
_HYPHENATED = re.compile(r"(?<![\w-])[a-z](?:\s*-\s*[a-z](?![\w]))+(?!-)")
_SPACED = re.compile(r"(?<!\w)[a-z](?:(?:\s*,\s*|\s+)[a-z](?!\w))+")


def hyphenated_letters(text: str) -> list[str]:
    """Each run of single letters joined by hyphens, as the word it spells: "g-a-r" is "gar"."""
    return [re.sub(r"[\s-]", "", run) for run in _HYPHENATED.findall(normalise(text))]


def spaced_letters(text: str) -> list[str]:
    """Each run of single letters separated by spaces or commas, as the word it spells."""
    return [re.sub(r"[\s,]", "", run) for run in _SPACED.findall(normalise(text))]


# --- Refusals ------------------------------------------------------------------------------

# Matched anywhere in the response, case-insensitive, as whole words, after `normalise`.
REFUSAL_PHRASES = (
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry, but",
    "i am sorry, but",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i'm not going to",
    "i am not going to",
    "i must decline",
    "i refuse to",
    "i'd rather not",
    "i don't feel comfortable",
    "i do not feel comfortable",
    "as an ai",
)
# What turns a curt refusal into one that offers a safe way forward.
SAFE_ALTERNATIVE_PHRASES = (
    "instead",
    "i can help",
    "i'd be happy to",
    "i would be happy to",
    "happy to help",
    "you could",
    "you might",
    "you can",
    "consider",
    "if you're",
    "if you are",
    "reach out",
    "contact",
    "professional",
)


def _any_phrase(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, phrases)) + r")(?!\w)")


_REFUSAL = _any_phrase(REFUSAL_PHRASES)
_SAFE_ALTERNATIVE = _any_phrase(SAFE_ALTERNATIVE_PHRASES)


def is_refusal(text: str) -> bool:
    return _REFUSAL.search(" ".join(normalise(text).split())) is not None


def offers_alternative(text: str) -> bool:
    return _SAFE_ALTERNATIVE.search(" ".join(normalise(text).split())) is not None


# --- Language ------------------------------------------------------------------------------

# A heuristic, not a language identifier: common function words of each language. A word on
# two lists ("de" is French and Spanish, "in" English and German) says nothing about which of
# the two a text is in, so it counts for neither.
_FUNCTION_WORDS = {
    "English": "the and is are of to in it that with for this my you i was be have on not what "
    "very like we they at from",
    "French": "le la les et est un une des du je tu il elle nous vous ils que qui pas ne avec "
    "pour dans sur mon ma mes très ce cette sont être mais ou où au aux suis aime de en",
    "Spanish": "el la los las y es un una de del que en con por para mi muy yo tú está son "
    "pero como más me gusta soy lo al hay",
    "German": "der die das und ist ein eine ich du er sie wir nicht mit für auf zu den dem "
    "mein meine sehr auch es im sind aber oder habe bin von",
}
LANGUAGES = tuple(_FUNCTION_WORDS)
_LISTINGS = Counter(word for listed in _FUNCTION_WORDS.values() for word in set(listed.split()))
LANGUAGE_MARKERS = {
    language: frozenset(word for word in listed.split() if _LISTINGS[word] == 1)
    for language, listed in _FUNCTION_WORDS.items()
}
_LETTER_WORD = re.compile(r"[^\W\d_]+")
MIN_LANGUAGE_HITS = 2  # fewer function words than this: too little text to tell


def language_hits(text: str) -> dict[str, int]:
    """How many of the text's words are each language's function words."""
    tokens = _LETTER_WORD.findall(normalise(text))
    return {
        language: sum(token in markers for token in tokens)
        for language, markers in LANGUAGE_MARKERS.items()
    }


def language_of(text: str) -> str | None:
    """The language with the most function words in the text, at least MIN_LANGUAGE_HITS of
    them; None on a tie or too little evidence."""
    hits = language_hits(text)
    best = max(hits.values())
    leaders = [language for language, count in hits.items() if count == best]
    return leaders[0] if best >= MIN_LANGUAGE_HITS and len(leaders) == 1 else None
