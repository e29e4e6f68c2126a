"""Rule-based text analysis for the template processors: sentences, words, keyphrases, named
entities and the relations between them.

The worker image carries no NLP model, so everything here is a small set of readable rules on
English text, with the standard library only. They are deliberately predictable rather than
clever: the same text always gives the same entities and relations, and a test can state what
a sentence must yield. What they find:

- **Entities**: runs of capitalized words (`Ada Lovelace`, `Acme Robotics Inc`), joined over
  `of` / `&` / `de` (`Bank of England`, `Procter & Gamble`) and initials (`J. R. Smith`); a
  title (`Dr.`, `Ms.`) marks a person and is dropped; a sentence's first word is dropped when
  it is a function word (`The`, `After`, `She`), since capitals there say nothing.
- **Aliases**: `X (Y)`, `X, also known as Y`, `X, formerly Y`.
- **Relations**: patterns between two entities of one sentence with no third entity between
  them (`X works at Y`, `X acquired Y`, `Y was acquired by X`, `X is the CEO of Y`, `X is based
  in Y`, `X founded Y`, `X is part of Y`), and `X is a <concept>` for lowercase descriptions.
- **Keyphrases**: RAKE (runs of content words between stop words, scored by word degree over
  frequency).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import TypedDict

# Function words: never an entity on their own, never part of a keyphrase, never embedded.
_STOPWORD_LIST = """
    a about above after again against all also although am among an and another any are as at
    be because been before being below between both but by can could did do does doing done
    down during each either else ever every few for from further had has have having he her
    here hers herself him himself his how however i if in into is it its itself just later
    least less let like many may me meanwhile might more most much must my myself near neither
    no nor not now of off often on once one only or other our ours ourselves out over own per
    perhaps rather same several she should since so some still such than that the their theirs
    them themselves then there these they this those though through thus to today together
    tomorrow too under until up upon us very via was we were what whatever when where whether
    which while who whom whose why will with within without would yesterday yet you your yours
    yourself yourselves finally first next recently currently soon last meanwhile instead
"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())
# Personal titles: the name that follows is a person's; the title is not part of the name.
TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "professor", "sir", "dame"})
# Capitalized, but not names.
_NOT_NAMES = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday",
     "saturday", "sunday"}
)
# Lowercase words that may join two capitalized ones inside a name (Bank of England).
_NAME_CONNECTORS = frozenset({"of", "de", "del", "der", "van", "von", "la", "le", "du", "&"})
# Periods that do not end a sentence.
_ABBREVIATIONS = frozenset(
    {*TITLES, "inc", "corp", "ltd", "co", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no",
     "mt", "ft", "u.s", "u.k"}
)

_APOSTROPHES = "'\u2019"
# Letters and digits, with inner apostrophes, hyphens and periods: O'Brien, e-mail, U.S.
_WORD = re.compile(r"[^\W_]+(?:[" + _APOSTROPHES + r"\-.][^\W_]+)*")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")


class Mention(TypedDict):
    """One occurrence of a named entity: sentence index, character span, surface text, and the
    type the surface alone suggests (``person`` after a title, ``organization`` for a corporate
    suffix, else ``entity``)."""

    sentence: int
    start: int
    end: int
    text: str
    type: str


class Relation(TypedDict):
    """A (subject, predicate, object) statement found in one sentence. ``object_kind`` is
    ``entity`` for a named entity, ``concept`` for the lowercase description of `X is a ...`."""

    subject: str
    predicate: str
    object: str
    object_kind: str
    sentence: int


class Keyphrase(TypedDict):
    phrase: str
    score: float


# --- words and sentences -------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The words of ``text``, lowercased (NFKC casefold), punctuation dropped."""
    return [w.casefold() for w in _WORD.findall(unicodedata.normalize("NFKC", text))]


def stem(word: str) -> str:
    """A deliberately tiny English stemmer (plural and possessive endings only), so that
    `vectors` matches `vector` without the surprises of a full stemmer."""
    word = _without_possessive(word)
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _without_possessive(word: str) -> str:
    if len(word) > 2 and word[-1] in "sS" and word[-2] in _APOSTROPHES:
        return word[:-2]
    return word


def content_words(text: str) -> list[str]:
    """The stemmed words of ``text`` that carry meaning (no stop words, no lone digits)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and not w.isdigit()]


def _ends_sentence(text: str, period_at: int) -> bool:
    """Whether the terminator at ``period_at`` really ends a sentence (not `Dr.`, `J.`)."""
    if text[period_at] != ".":
        return True
    before = text[:period_at].rsplit(None, 1)
    last = before[-1].casefold() if before else ""
    last = last.lstrip("(\"'")
    if last in _ABBREVIATIONS:
        return False
    return not (len(last) == 1 and last.isalpha())  # an initial: J. R. Smith


def paragraphs(text: str) -> list[str]:
    """The non-empty paragraphs of ``text`` (blocks between blank lines)."""
    return [p for p in _PARAGRAPHS.split(text) if p.strip()]


def sentences(text: str) -> list[str]:
    """The sentences of ``text``. Paragraphs (blank lines) always end one; line breaks within a
    paragraph are wrapping, not boundaries."""
    found: list[str] = []
    for paragraph in paragraphs(text):
        flat = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_END.finditer(flat):
            if _ends_sentence(flat, match.start()):
                found.append(flat[start : match.end()].strip())
                start = match.end()
        if flat[start:].strip():
            found.append(flat[start:].strip())
    return found


# --- keyphrases ----------------------------------------------------------------------------------


def keyphrases(text: str, top: int = 10, max_words: int = 4) -> list[Keyphrase]:
    """The ``top`` RAKE keyphrases of ``text``, best first (ties alphabetically).

    Candidates are runs of content words between stop words and punctuation; a word scores its
    degree (co-occurring words in candidates, itself included) over its frequency, so words that
    live in longer phrases weigh more; a phrase scores the sum of its words.
    """
    candidates: list[list[str]] = []
    for sentence in sentences(text):
        for fragment in re.split(r"[,;:()\[\]\"“”]", sentence):
            run: list[str] = []
            for word in [*words(fragment), ""]:  # "" flushes the last run
                if word and word not in STOPWORDS and not word.isdigit() and len(word) > 1:
                    run.append(word)
                    continue
                if run and len(run) <= max_words:
                    candidates.append(run)
                run = []
    frequency: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    for run in candidates:
        for word in run:
            frequency[word] += 1
            degree[word] += len(run)
    scores: dict[str, float] = {}
    for run in candidates:
        scores[" ".join(run)] = sum(degree[w] / frequency[w] for w in run)
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [Keyphrase(phrase=phrase, score=round(score, 3)) for phrase, score in best]


# --- entities ------------------------------------------------------------------------------------

_ORGANIZATION_WORDS = frozenset(
    {"inc", "corp", "corporation", "ltd", "llc", "gmbh", "plc", "ag", "co", "company", "group",
     "labs", "laboratories", "university", "institute", "bank", "foundation", "agency",
     "systems", "technologies", "robotics", "industries", "holdings", "partners"}
)


def _is_capitalized(word: str) -> bool:
    return word[:1].isupper()


def _joinable(sentence: str, previous_end: int, start: int, previous: str) -> bool:
    """Whether two capitalized words belong to one name: only spaces between them, or the
    period of an initial or a title (`J. Smith`, `Dr. Ada`)."""
    gap = sentence[previous_end:start]
    if not gap.strip():
        return True
    stripped = previous.casefold()
    return gap.strip() == "." and (len(previous) == 1 or stripped in TITLES)


def mentions(sentence_list: list[str]) -> list[Mention]:
    """The named-entity mentions of each sentence, in reading order.

    A capital at the start of a sentence says nothing, so a sentence's first word is left out
    of a name when it is a function word or the text uses it in lowercase elsewhere
    (`Researchers at Acme ...` next to `... the researchers`).
    """
    lowercase = {w for s in sentence_list for w in _WORD.findall(s) if w[:1].islower()}
    found: list[Mention] = []
    for number, sentence in enumerate(sentence_list):
        found.extend(_sentence_mentions(number, sentence, lowercase))
    return found


def _sentence_mentions(number: int, sentence: str, lowercase: set[str]) -> list[Mention]:
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"&|" + _WORD.pattern,
                                                                    sentence)]
    found: list[Mention] = []
    index = 0
    while index < len(tokens):
        if not _is_capitalized(tokens[index][2]):
            index += 1
            continue
        run = [tokens[index]]
        index += 1
        while index < len(tokens):
            start, _end, word = tokens[index]
            previous = run[-1][2]
            if previous != _without_possessive(previous) or not _joinable(
                sentence, run[-1][1], start, previous
            ):
                break
            if _is_capitalized(word):
                run.append(tokens[index])
                index += 1
            elif (word.casefold() in _NAME_CONNECTORS and index + 1 < len(tokens)
                  and _is_capitalized(tokens[index + 1][2])
                  and _joinable(sentence, tokens[index][1], tokens[index + 1][0], word)):
                run.extend(tokens[index : index + 2])
                index += 2
            else:
                break
        first = run[0][0] == tokens[0][0]
        mention = _mention_from_run(number, sentence, run, lowercase if first else None)
        if mention is not None:
            found.append(mention)
    return found


def _mention_from_run(
    number: int, sentence: str, run: list[tuple[int, int, str]], lowercase: set[str] | None
) -> Mention | None:
    """The mention a run of capitalized words names, if any. ``lowercase`` (the words the text
    also writes in lowercase) is given only for a run that starts its sentence."""
    kind = "entity"
    while run:
        word = run[0][2].casefold()
        if word in TITLES:
            kind = "person"
        elif not (word in _ROLE_WORDS or word in _NAME_CONNECTORS
                  or (word in STOPWORDS and (lowercase is not None or len(run) > 1))
                  or (lowercase is not None and word in lowercase)):
            break
        run = run[1:]
        lowercase = None
    while run and run[-1][2].casefold() in _NAME_CONNECTORS:
        run = run[:-1]
    if not run or all(word.casefold() in STOPWORDS | _NOT_NAMES for _s, _e, word in run):
        return None
    if run[-1][2].casefold().rstrip(".") in _ORGANIZATION_WORDS:
        kind = "organization"
    start, end = run[0][0], run[-1][1]
    end -= len(run[-1][2]) - len(_without_possessive(run[-1][2]))  # Acme's CEO
    return Mention(sentence=number, start=start, end=end, text=sentence[start:end], type=kind)


# --- aliases and relations -----------------------------------------------------------------------

_PLACEHOLDER = "⟦{}⟧"
_ENTITY = r"⟦(?P<{}>\d+)⟧"
_S, _O = _ENTITY.format("s"), _ENTITY.format("o")
_GAP = r"(?:[^⟦⟧;]*?\s)?"  # words between, but never another entity: the nearest one wins
_ROLES = ("chief executive", "ceo", "cto", "cfo", "founder", "co-founder", "president",
          "chairman", "chair", "director", "head")
# A role is not a name, even capitalized (`the CEO of Acme`, `Acme's CFO`).
_ROLE_WORDS = frozenset(word for role in _ROLES for word in role.split())
_ROLE_PREDICATE = {"chief executive": "ceo_of", "co-founder": "founder_of", "chair": "chair_of"}

# (predicate, pattern): a passive pattern names its object first (`Y was acquired by X`).
_RELATION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (predicate, re.compile(pattern, re.IGNORECASE))
    for predicate, pattern in (
        ("works_at", _S + r",?\s" + _GAP + r"(?:works|worked|is working|was working|is employed"
         r"|was employed|is an? \w+ at|was an? \w+ at)\s+(?:at\s+|for\s+|by\s+)?(?:the\s+)?"
         + _O),
        ("works_at", _S + r",?\s" + _GAP + r"(?:joined|has joined|will join)\s+(?:the\s+)?"
         + _O),
        ("acquired", _S + r",?\s" + _GAP + r"(?:acquired|has acquired|bought|purchased|took over"
         r"|agreed to buy)\s+(?:the\s+)?" + _O),
        ("acquired", _O + r",?\s(?:was|has been|were|is being)\s+(?:acquired|bought|purchased"
         r"|taken over)\s+" + _GAP + r"by\s+(?:the\s+)?" + _S),
        ("founded", _S + r",?\s" + _GAP + r"(?:founded|co-founded|established|started)\s+"
         r"(?:the\s+)?" + _O),
        ("founded", _O + r",?\s(?:was|were|had been)\s+(?:founded|co-founded|established"
         r"|started)\s+" + _GAP + r"by\s+" + _S),
        ("located_in", _S + r",?\s" + _GAP + r"(?:based|headquartered|located)\s+in\s+(?:the\s+)?"
         + _O),
        ("part_of", _S + r",?\s" + _GAP + r"(?:is|was|became|becomes)\s+(?:now\s+)?(?:an?\s+|the"
         r"\s+)?(?:subsidiary|division|unit|part|member)\s+of\s+(?:the\s+)?" + _O),
    )
)
_ROLE_ALTERNATIVES = "|".join(re.escape(r) for r in _ROLES)
_ROLE_PATTERNS = (
    re.compile(
        _S + r",?\s+(?:who\s+)?(?:is\s+|was\s+|became\s+|has been\s+)?(?:the\s+|an?\s+)?"
        r"(?:current\s+|new\s+)?(?P<role>" + _ROLE_ALTERNATIVES + r")\s+(?:of|at)\s+(?:the\s+)?"
        + _O,
        re.IGNORECASE,
    ),
    re.compile(  # Acme's CEO is Ada
        _O + "[" + _APOSTROPHES + r"]s\s+(?:current\s+|new\s+)?(?P<role>" + _ROLE_ALTERNATIVES
        + r")\s*,?\s+(?:is|was|became|has been)\s+" + _S,
        re.IGNORECASE,
    ),
)
# `X (Y)` names Y as X's alias; relations read the sentence without it (`X (Y) was founded`).
_PARENTHESIZED_ENTITY = re.compile(r"\s*\(\s*⟦\d+⟧\s*\)")
_CONCEPT_STOP = frozenset({"based", "that", "which", "who", "with", "in", "of", "from", "and",
                           "at", "for", "by", "on", "to", "founded", "headquartered", "located"})
_IS_A = re.compile(_S + r"\s+(?:is|was|remains)\s+(?:a|an)\s+(?P<concept>[a-z][\w-]*"
                   r"(?:\s+[a-z][\w-]*){0,5})")
_ALIAS_PATTERNS = (
    re.compile(_S + r"\s*\(\s*(?:formerly\s+|also known as\s+|aka\s+)?" + _O + r"\s*\)"),
    re.compile(_S + r",?\s+(?:also known as|aka|a\.k\.a\.|formerly known as|formerly"
               r"|better known as)\s+" + _O),
)


def _masked(sentence: str, sentence_mentions: list[Mention]) -> str:
    """The sentence with each mention replaced by ``⟦i⟧`` (its index in the list)."""
    out, cursor = [], 0
    for index, mention in enumerate(sentence_mentions):
        out += [sentence[cursor : mention["start"]], _PLACEHOLDER.format(index)]
        cursor = mention["end"]
        last_word = mention["text"].rsplit(None, 1)[-1].casefold()
        if sentence[cursor : cursor + 1] == "." and last_word in _ABBREVIATIONS:
            cursor += 1  # `Acme Inc. is based in Berlin`: the period is the name's
    out.append(sentence[cursor:])
    return "".join(out)


def aliases(sentence: str, sentence_mentions: list[Mention]) -> list[tuple[str, str]]:
    """(name, alias) pairs the sentence states: `International Business Machines (IBM)`."""
    masked = _masked(sentence, sentence_mentions)
    found = []
    for pattern in _ALIAS_PATTERNS:
        for match in pattern.finditer(masked):
            name = sentence_mentions[int(match["s"])]["text"]
            found.append((name, sentence_mentions[int(match["o"])]["text"]))
    return found


def relations(number: int, sentence: str, sentence_mentions: list[Mention]) -> list[Relation]:
    """The relations one sentence states between its mentions (see the module docstring)."""
    masked = _PARENTHESIZED_ENTITY.sub("", _masked(sentence, sentence_mentions))

    def text(group: str, match: re.Match[str]) -> str:
        return sentence_mentions[int(match[group])]["text"]

    found: list[Relation] = []
    for predicate, pattern in _RELATION_PATTERNS:
        for match in _overlapping(pattern, masked):
            found.append(Relation(subject=text("s", match), predicate=predicate,
                                  object=text("o", match), object_kind="entity",
                                  sentence=number))
    for role_pattern in _ROLE_PATTERNS:
        for match in _overlapping(role_pattern, masked):
            role = match["role"].casefold()
            predicate = _ROLE_PREDICATE.get(role, role.replace(" ", "_") + "_of")
            found.append(Relation(subject=text("s", match), predicate=predicate,
                                  object=text("o", match), object_kind="entity",
                                  sentence=number))
    for match in _IS_A.finditer(masked):
        concept = _concept(match["concept"])
        if concept:
            found.append(Relation(subject=text("s", match), predicate="is_a", object=concept,
                                  object_kind="concept", sentence=number))
    return _unique(found)


def _overlapping(pattern: re.Pattern[str], masked: str) -> list[re.Match[str]]:
    """Matches starting at every entity, so `A acquired B and C acquired D` yields both."""
    found = []
    for start in (m.start() for m in re.finditer("⟦", masked)):
        match = pattern.match(masked, start)
        if match:
            found.append(match)
    return found


def _concept(phrase: str) -> str:
    kept: list[str] = []
    for word in phrase.split():
        if word in _CONCEPT_STOP:
            break
        kept.append(word)
    while kept and kept[-1] in STOPWORDS:
        kept.pop()
    return " ".join(kept)


def _unique(found: list[Relation]) -> list[Relation]:
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for relation in found:
        key = (relation["subject"], relation["predicate"], relation["object"])
        if key not in seen and relation["subject"] != relation["object"]:
            seen.add(key)
            unique.append(relation)
    return unique
