"""The rule-based text analysis behind the template processors: each rule on a sentence whose
answer is known."""

from __future__ import annotations

import pytest

from kubedag.worker.processors.text_analysis import (
    aliases,
    content_words,
    keyphrases,
    mentions,
    relations,
    sentences,
)


def _names(text: str) -> list[tuple[str, str]]:
    return [(m["text"], m["type"]) for m in mentions(sentences(text))]


def _triples(sentence: str) -> list[tuple[str, str, str]]:
    found = mentions([sentence])
    return [(r["subject"], r["predicate"], r["object"]) for r in relations(0, sentence, found)]


def test_sentences_end_at_terminators_and_paragraphs_but_not_abbreviations() -> None:
    text = ("Dr. Ada works at Acme Inc. in Berlin. J. R. Smith\nagreed! Is it so?\n\n"
            "A heading\n\nLast one")
    assert sentences(text) == [
        "Dr. Ada works at Acme Inc. in Berlin.", "J. R. Smith agreed!", "Is it so?",
        "A heading", "Last one",
    ]


def test_entities_are_capitalized_runs_with_titles_connectors_and_suffixes() -> None:
    text = ("Dr. Ada Lovelace met J. R. Smith at the Bank of England. Procter & Gamble hired "
            "Ms. Jane Doe. Globex Corporation grew.")
    assert _names(text) == [
        ("Ada Lovelace", "person"), ("J. R. Smith", "entity"), ("Bank of England", "entity"),
        ("Procter & Gamble", "entity"), ("Jane Doe", "person"),
        ("Globex Corporation", "organization"),
    ]


def test_a_sentence_start_is_no_evidence_of_a_name() -> None:
    text = ("The robots run. Researchers at Acme said so; the researchers agreed. Yesterday Acme "
            "grew. In March, Initech's CEO left.")
    assert _names(text) == [("Acme", "entity"), ("Acme", "entity"), ("Initech", "entity")]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Ada Lovelace works at Acme Robotics.", [("Ada Lovelace", "works_at", "Acme Robotics")]),
        ("Grace Hopper, who joined in 2019, now works for the Bank of England.",
         [("Grace Hopper", "works_at", "Bank of England")]),
        ("Alan Turing joined Initech.", [("Alan Turing", "works_at", "Initech")]),
        ("Acme acquired Globex and Initech bought Hooli.",
         [("Acme", "acquired", "Globex"), ("Initech", "acquired", "Hooli")]),
        ("Globex was acquired by Initech last year.", [("Initech", "acquired", "Globex")]),
        ("International Business Machines (IBM) was founded by Charles Flint.",
         [("Charles Flint", "founded", "International Business Machines")]),
        ("Lovelace founded Acme in 2015.", [("Lovelace", "founded", "Acme")]),
        ("Acme Robotics Inc. is headquartered in Berlin.",
         [("Acme Robotics Inc", "located_in", "Berlin")]),
        ("Lovelace is the CEO of Acme.", [("Lovelace", "ceo_of", "Acme")]),
        ("Acme's CEO is Lovelace.", [("Lovelace", "ceo_of", "Acme")]),
        ("Hooli is now a subsidiary of Initech.", [("Hooli", "part_of", "Initech")]),
        ("Globex is a battery manufacturer based in Oslo.",
         [("Globex", "located_in", "Oslo"), ("Globex", "is_a", "battery manufacturer")]),
        # The nearest entity is the subject: Bob works at Acme, not Alice.
        ("Alice Smith met Bob Jones, who works at Acme.", [("Bob Jones", "works_at", "Acme")]),
        ("Alice Smith visited Acme in Berlin.", []),
    ],
)
def test_relation_patterns(sentence: str, expected: list[tuple[str, str, str]]) -> None:
    assert _triples(sentence) == expected


def test_a_relation_object_that_is_no_name_is_a_concept() -> None:
    found = mentions(["Acme is a robotics company that builds robots."])
    (relation,) = relations(0, "Acme is a robotics company that builds robots.", found)
    assert (relation["object"], relation["object_kind"]) == ("robotics company", "concept")


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("International Business Machines (IBM) grew.",
         [("International Business Machines", "IBM")]),
        ("Globex Corporation, also known as Globex, grew.", [("Globex Corporation", "Globex")]),
        ("Hooli, formerly Initech, grew.", [("Hooli", "Initech")]),
        ("Acme met Globex.", []),
    ],
)
def test_stated_aliases(sentence: str, expected: list[tuple[str, str]]) -> None:
    assert aliases(sentence, mentions([sentence])) == expected


def test_keyphrases_score_word_degree_over_frequency() -> None:
    text = ("Vector search finds similar chunks. A flat index compares every vector. "
            "Vector search is exact with a flat index.")
    # degree/frequency: flat 5/2, index 5/2, compares 3/1, vector 3/2, search 2/1, exact 1/1;
    # "vector search finds similar chunks" has more than max_words (4) words: no candidate.
    assert keyphrases(text, top=4) == [
        {"phrase": "flat index compares", "score": 8.0}, {"phrase": "flat index", "score": 5.0},
        {"phrase": "vector search", "score": 3.5}, {"phrase": "vector", "score": 1.5},
    ]
    assert keyphrases(text, top=0) == []


def test_content_words_drop_stop_words_and_plurals() -> None:
    assert content_words("The vectors of Acme's 3 studies, and a class") == [
        "vector", "acme", "study", "class"
    ]
