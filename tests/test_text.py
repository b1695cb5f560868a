"""Plot cleaning: the configured steps, and spans that point back into the raw plot."""

from __future__ import annotations

import pytest

from thesis_lib.data.text import (
    CLEAN,
    RAW,
    TextCleaningConfig,
    Word,
    clean_text,
    clean_words,
    cleaned_spans,
    english_stop_words,
)

PLOT = "In 1944, the café's owner Amélie—a spy!—hides   «Zombies» from\nthe Nazis; she doesn't panic :-)"
NO_STOPWORDS = TextCleaningConfig(remove_stopwords=False)


def test_clean_pipeline_lowercases_strips_special_characters_and_stop_words():
    assert clean_text(PLOT, CLEAN) == "1944 cafés owner amélie spy hides zombies nazis doesnt panic"


def test_every_span_points_at_the_raw_word_it_came_from():
    for config in (CLEAN, NO_STOPWORDS, RAW, TextCleaningConfig(lowercase=False)):
        for word in clean_words(PLOT, config):
            raw = PLOT[word.start : word.end]
            if config.remove_special_characters:
                assert raw.replace("'", "").lower() == word.text.lower()
            else:
                assert raw.lower() == word.text.lower()


def test_spans_of_specific_words():
    words = {word.text: word for word in clean_words(PLOT, CLEAN)}
    assert PLOT[words["amélie"].start : words["amélie"].end] == "Amélie"
    assert PLOT[words["cafés"].start : words["cafés"].end] == "café's"  # the apostrophe joins, then goes
    assert PLOT[words["zombies"].start : words["zombies"].end] == "Zombies"  # guillemets are not part of it
    assert words["1944"] == Word("1944", 3, 7)


def test_special_characters_are_removed_and_separate_words():
    text = "well-known x_y $100 e-mail: a@b.c 😀 end."
    assert clean_text(text, NO_STOPWORDS) == "well known x y 100 e mail a b c end"


def test_unicode_letters_and_numbers_are_kept():
    cleaned = clean_text("Ça ira, Amélie: Götterdämmerung™ 2049 ©", NO_STOPWORDS)
    assert cleaned == "ça ira amélie götterdämmerung 2049"


def test_decomposed_accents_stay_inside_their_word():
    decomposed = "Ame\u0301lie"  # "e" + combining acute accent
    (word,) = clean_words(decomposed, CLEAN)
    assert word.text == "amélie"  # composed (NFC) in the cleaned text ...
    assert (word.start, word.end) == (0, len(decomposed))  # ... spanning the raw characters


def test_stop_words_are_dropped_only_when_configured():
    text = "The man and the Woman"
    assert clean_text(text, CLEAN) == "man woman"
    assert clean_text(text, NO_STOPWORDS) == "the man and the woman"
    assert {"the", "and"} <= english_stop_words() and "woman" not in english_stop_words()


def test_stop_words_match_case_insensitively_and_through_punctuation_without_special_character_removal():
    config = TextCleaningConfig(lowercase=False, remove_special_characters=False, remove_stopwords=True)
    assert clean_text("The hero, THE villain and...", config) == "hero, villain"


def test_lowercase_alone():
    config = TextCleaningConfig(lowercase=True, remove_special_characters=False, remove_stopwords=False)
    assert clean_text("Hello, World!", config) == "hello, world!"


def test_raw_keeps_every_character_and_only_collapses_whitespace():
    assert clean_text(PLOT, RAW) == " ".join(PLOT.split())
    assert [PLOT[w.start : w.end] for w in clean_words(PLOT, RAW)] == PLOT.split()


@pytest.mark.parametrize("text", ["", "   \n ", "!!! ... ---"])
def test_texts_without_words_clean_to_empty(text):
    assert clean_words(text, CLEAN) == []
    assert clean_text(text, CLEAN) == ""


def test_clean_text_is_the_joined_words():
    for config in (CLEAN, RAW, NO_STOPWORDS):
        assert clean_text(PLOT, config) == " ".join(word.text for word in clean_words(PLOT, config))


def test_cleaned_spans_locate_each_word_in_the_cleaned_text():
    words = clean_words(PLOT, CLEAN)
    cleaned = clean_text(PLOT, CLEAN)
    spans = cleaned_spans(words)
    assert [cleaned[start:end] for start, end in spans] == [word.text for word in words]
    assert spans[-1][1] == len(cleaned)
