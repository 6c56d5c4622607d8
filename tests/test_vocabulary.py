"""The words every layer shares: how a slice and a case's strata read."""

from evallib.vocabulary import ALL_CASES, slice_label, slice_name, strata_text


def test_a_slice_reads_one_way_everywhere() -> None:
    cell = {"query_type": "billing", "difficulty": "hard"}
    assert slice_label(cell) == "query_type=billing × difficulty=hard"  # the keys' order kept
    assert slice_name(cell) == "billing × hard"
    assert slice_label({}) == slice_label(None) == ALL_CASES == "all cases"


def test_a_cases_strata_read_as_the_finest_slice_it_is_in() -> None:
    strata = {"segment": "smb", "query_type": "billing"}
    assert strata_text(strata) == "query_type=billing × segment=smb"  # sorted: one spelling
    assert strata_text(strata) == strata_text(dict(reversed(strata.items())))
    assert strata_text({}) == strata_text(None) == ""
