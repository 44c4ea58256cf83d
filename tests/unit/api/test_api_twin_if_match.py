"""If-Match against a twin's version: `*`, one strong entity tag, or a list of them."""

from __future__ import annotations

import pytest

from api.twin.services import matches


@pytest.mark.parametrize(
    ("header", "version", "admitted"),
    [
        ('"7"', 7, True),
        ('"7"', 8, False),
        ("*", 0, True),
        ('"3", "7"', 7, True),
        ('"3","8"', 7, False),
        ("7", 7, False),  # not an entity tag: unquoted
        ('W/"7"', 7, False),  # weak tags never match If-Match (RFC 9110 §13.1.1)
        ('"07"', 7, False),
    ],
)
def test_if_match_admits_exactly_the_current_version(header: str, version: int, admitted: bool) -> None:
    assert matches(header, version) is admitted
