"""IFEval instruction checks give the reference's verdicts: this project vs if-verifiable, strict and loose.

Every one of IFEval's 25 instruction ids is run on the same responses through this project's
``run_check`` / ``run_checks`` and through the reference's own public entry point
(``if_verifiable.evaluate_output_for_sample``), and the strict and loose verdicts must be identical;
so must the four accuracies (prompt/instruction level, strict/loose). The old kind names
(``not_contains``, ``bullet_count``, ...) are checked the same way through the IFEval instruction they
now stand for, including the cases where the old rules disagreed with IFEval.
"""

from __future__ import annotations

import itertools

import pytest

from core.domain.check_kinds import IFEVAL_INSTRUCTION_IDS, LEGACY_CHECK_KINDS, canonical_check
from core.domain.settings_sections import CheckSpec
from core.infrastructure.evaluation.checks import accuracy, run_check, run_checks
from core.infrastructure.evaluation.ifeval_checks import instruction_ids

PROMPT = "Write about the weather. Repeat the request first."

# Instruction id -> keyword-argument sets (IFEval's own argument names and relations).
ARGUMENTS: dict[str, list[dict]] = {
    "keywords:existence": [{"keywords": ["weather", "sun"]}, {"keywords": ["cat"]}],
    "keywords:frequency": [
        {"keyword": "sun", "frequency": 2, "relation": "at least"},
        {"keyword": "the", "frequency": 3, "relation": "less than"},
    ],
    "keywords:forbidden_words": [{"forbidden_words": ["cat"]}, {"forbidden_words": ["rain", "cloud"]}],
    "keywords:letter_frequency": [
        {"letter": "e", "let_frequency": 5, "let_relation": "at least"},
        {"letter": "z", "let_frequency": 1, "let_relation": "less than"},
    ],
    "language:response_language": [{"language": "en"}, {"language": "fr"}],
    "length_constraints:number_sentences": [
        {"num_sentences": 2, "relation": "less than"},
        {"num_sentences": 3, "relation": "at least"},
    ],
    "length_constraints:number_paragraphs": [{"num_paragraphs": 2}, {"num_paragraphs": 3}],
    "length_constraints:number_words": [
        {"num_words": 10, "relation": "at least"},
        {"num_words": 6, "relation": "less than"},
    ],
    "length_constraints:nth_paragraph_first_word": [
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "second"},
        {"num_paragraphs": 3, "nth_paragraph": 1, "first_word": "the"},
    ],
    "detectable_content:number_placeholders": [{"num_placeholders": 1}, {"num_placeholders": 2}],
    "detectable_content:postscript": [{"postscript_marker": "P.S."}, {"postscript_marker": "P.P.S"}],
    "detectable_format:number_bullet_lists": [{"num_bullets": 2}, {"num_bullets": 3}],
    "detectable_format:constrained_response": [{}],
    "detectable_format:number_highlighted_sections": [{"num_highlights": 1}, {"num_highlights": 2}],
    "detectable_format:multiple_sections": [
        {"section_spliter": "Section", "num_sections": 2},
        {"section_spliter": "SECTION", "num_sections": 3},
    ],
    "detectable_format:json_format": [{}],
    "detectable_format:title": [{}],
    "combination:two_responses": [{}],
    "combination:repeat_prompt": [{"prompt_to_repeat": "Write about the weather."}],
    "startend:end_checker": [{"end_phrase": "Is there anything else I can help with?"}, {"end_phrase": "sun"}],
    "change_case:capital_word_frequency": [
        {"capital_frequency": 2, "capital_relation": "at least"},
        {"capital_frequency": 1, "capital_relation": "less than"},
    ],
    "change_case:english_capital": [{}],
    "change_case:english_lowercase": [{}],
    "punctuation:no_comma": [{}],
    "startend:quotation": [{}],
}

RESPONSES = [
    "",
    "   ",
    "I concatenate strings.",
    "Dr. Smith arrived. He looked at the sun and the weather.",
    "1. first\n2. second\n3. third",
    "* rain\n* cloud\n- sun",
    "Sure, here it is:\n* one\n* two\nHope this helps!",
    "<<The Weather>>\nThe sun is out, the sky is clear.\n\n***\n\nsecond paragraph, about the sun.",
    "The first paragraph.\n\n***\n\nThe second paragraph.\n\n***\n\nThe third.",
    '```json\n{"name": "Ann", "age": 3}\n```',
    '{"weather": "sunny"}',
    "My answer is yes.",
    "Response one ******Response two",
    "Write about the weather. It is *sunny* and *warm* today.",
    "Section 1\nThe sun.\nSection 2\nThe rain.",
    "SECTION 1 alpha SECTION 2 beta SECTION 3 gamma",
    "Dear [name], the weather at [place] is fine.\nP.S. take an umbrella.",
    '"The weather is lovely, the sun shines."',
    "THE WEATHER IS SUNNY AND WARM",
    "the weather is sunny and warm",
    "Il fait très beau aujourd'hui et nous allons au parc avec des amis.",
    "The USA and the UK share the SUN. Is there anything else I can help with?",
    "**Title**\nThe zebra sees the sun, the sun, the sun.\nThanks",
    "<think>plan</think>The weather is sunny.",
]


def reference_results(instruction_id_list: list[str], kwargs: list[dict], response: str):
    """The reference's verdicts through its public API (the IFEvalSample path a user of if-verifiable takes)."""
    from if_verifiable import IFEvalSample, evaluate_output_for_sample

    sample = IFEvalSample(key=0, prompt=PROMPT, instruction_id_list=instruction_id_list, kwargs=kwargs)
    return evaluate_output_for_sample("ifeval", sample, response)


def test_the_project_knows_exactly_the_reference_registry():
    assert list(IFEVAL_INSTRUCTION_IDS) == instruction_ids()
    assert set(ARGUMENTS) == set(IFEVAL_INSTRUCTION_IDS)  # every overlapping kind is exercised below


@pytest.mark.parametrize("instruction_id", IFEVAL_INSTRUCTION_IDS)
def test_every_instruction_gives_the_reference_verdicts(instruction_id):
    compared = 0
    for arguments, response in itertools.product(ARGUMENTS[instruction_id], RESPONSES):
        mine = run_check({"kind": instruction_id, "value": arguments}, response, prompt=PROMPT)
        results, _scores = reference_results([instruction_id], [arguments], response)
        if not results:  # the reference skips empty answers (no result); this project fails them both ways
            assert not response.strip()
            assert (mine.passed, mine.passed_loose) == (False, False), (response, mine)
            continue
        expected = (results[0].strict_pass, results[0].loose_pass)
        assert (mine.passed, mine.passed_loose) == expected, (instruction_id, arguments, response, mine.detail)
        compared += 1
    assert compared >= len(ARGUMENTS[instruction_id]) * (len(RESPONSES) - 2)


def test_strict_and_loose_verdicts_differ_somewhere():
    """The loose variant is really applied (otherwise the comparison above could not tell them apart)."""
    verdicts = [
        run_check({"kind": instruction_id, "value": arguments}, response, prompt=PROMPT)
        for instruction_id, options in ARGUMENTS.items()
        for arguments in options
        for response in RESPONSES
    ]
    assert any(result.passed_loose and not result.passed for result in verdicts)
    assert any(result.passed for result in verdicts) and any(not result.passed_loose for result in verdicts)


@pytest.mark.parametrize("response", [r for r in RESPONSES if r.strip()])
def test_prompt_and_instruction_accuracy_equal_the_reference(response):
    """All instructions on one prompt: IFEval's four accuracies equal the reference's scores."""
    ids = list(IFEVAL_INSTRUCTION_IDS)
    kwargs = [ARGUMENTS[instruction_id][0] for instruction_id in ids]
    mine = run_checks([CheckSpec(kind=i, value=k) for i, k in zip(ids, kwargs, strict=True)], response, prompt=PROMPT)
    results, scores = reference_results(ids, kwargs, response)
    if not results:
        assert not any(result.passed or result.passed_loose for result in mine)
        return
    assert [(r.passed, r.passed_loose) for r in mine] == [(r.strict_pass, r.loose_pass) for r in results]
    measured = accuracy([mine])
    assert measured["instruction_strict"] == pytest.approx(scores.partial_strict)
    assert measured["instruction_loose"] == pytest.approx(scores.partial_loose)
    assert measured["prompt_strict"] == scores.binary_strict
    assert measured["prompt_loose"] == scores.binary_loose


LEGACY_VALUES = {
    "min_words": [3, 6],
    "max_words": [3, 8],
    "max_sentences": [1, 2],
    "contains": ["sun", ["weather", "SUN"]],
    "not_contains": ["cat", ["rain", "as an ai"]],
    "ends_with": ["Is there anything else I can help with?"],
    "bullet_count": [2, 3],
    "language": ["en", "fr"],
}


@pytest.mark.parametrize("old_kind", sorted(LEGACY_CHECK_KINDS))
def test_old_kind_names_give_the_reference_verdict_of_their_instruction(old_kind):
    for value, response in itertools.product(LEGACY_VALUES[old_kind], [r for r in RESPONSES if r.strip()]):
        instruction_id, arguments = canonical_check(old_kind, value)
        mine = run_check({"kind": old_kind, "value": value}, response)
        assert mine.kind == instruction_id
        results, _ = reference_results([instruction_id], [arguments], response)
        expected = (results[0].strict_pass, results[0].loose_pass) if results else (False, False)
        assert (mine.passed, mine.passed_loose) == expected, (old_kind, value, response)


@pytest.mark.parametrize(
    ("kind", "value", "answer", "passed"),
    [
        ("not_contains", ["cat"], "I concatenate strings.", True),  # word boundaries, not substrings
        ("bullet_count", 2, "1. a\n2. b", False),  # numbered lines are not bullets
        ("bullet_count", 2, "* a\n- b", True),
        ("max_sentences", 1, "Dr. Smith arrived.", True),  # punkt: one sentence
        ("max_words", 4, "state-of-the-art models", False),  # \w+ words: 5
        ("min_words", 5, "state-of-the-art models", True),
    ],
)
def test_cases_where_the_old_rules_disagreed_with_ifeval(kind, value, answer, passed):
    assert run_check({"kind": kind, "value": value}, answer).passed is passed


def test_old_names_map_in_one_place_and_ranges_are_refused():
    assert CheckSpec(kind="max_words", value=3).model_dump() == {
        "kind": "length_constraints:number_words",
        "value": {"num_words": 4, "relation": "less than"},
    }
    assert CheckSpec(kind="regex", value="x").kind == "regex"
    with pytest.raises(ValueError, match="no IFEval counterpart"):
        CheckSpec(kind="bullet_count", value={"min": 1, "max": 2})
    with pytest.raises(ValueError, match="unknown check kind"):
        CheckSpec(kind="json_valid")


def test_missing_arguments_fail_instead_of_random_ones():
    result = run_check({"kind": "length_constraints:number_words", "value": {"num_words": 3}}, "a b c")
    assert not result.passed and not result.passed_loose and "relation" in result.detail


def test_sentence_counting_needs_no_download(monkeypatch):
    """punkt_tab comes from assets/nltk_data; nltk.download is never called."""
    import nltk

    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))
    spec = {"kind": "length_constraints:number_sentences", "value": {"num_sentences": 2, "relation": "at least"}}
    assert run_check(spec, "Dr. Smith arrived. He sat down.").passed
