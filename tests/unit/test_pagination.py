"""Offset paging (core.pagination.Page): every list call pages the same way, and a token that a
list call did not make is refused naming NextToken."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.core.pagination import Page, encode_token
from shipyard.errors import ValidationError

ITEMS = list(range(7))


def _all_pages(size: int, items: list[int]) -> list[list[int]]:
    pages, token = [], None
    while True:
        found, token = Page.at(token, size).slice(items)
        pages.append(found)
        if token is None:
            return pages


@pytest.mark.parametrize(
    ("size", "items", "pages"),
    [
        (3, ITEMS, [[0, 1, 2], [3, 4, 5], [6]]),
        (7, ITEMS, [ITEMS]),  # exactly one full page: no token, no empty page after it
        (10, ITEMS, [ITEMS]),
        (1, [0, 1], [[0], [1]]),
        (5, [], [[]]),
    ],
)
def test_following_the_tokens_visits_every_item_once(
    size: int, items: list[int], pages: list[list[int]]
) -> None:
    assert _all_pages(size, items) == pages


def test_a_query_reads_one_more_than_the_page_to_know_whether_another_follows() -> None:
    first = Page.requested({"MaxResults": 3}, default_size=10)
    assert (first.offset, first.limit) == (0, 4)
    found, token = first.cut(ITEMS[first.offset : first.offset + first.limit])
    assert found == [0, 1, 2]
    second = Page.requested({"NextToken": token, "MaxResults": 3}, default_size=10)
    assert second.offset == 3
    assert second.cut([3, 4]) == ([3, 4], None)


@pytest.mark.parametrize(
    ("params", "size"),
    [({}, 50), ({"MaxResults": None}, 50), ({"MaxResults": 0}, 50), ({"MaxResults": 2}, 2)],
)
def test_the_page_size_is_max_results_else_the_calls_default(params: dict[str, Any], size: int) -> None:
    assert Page.requested(params, default_size=50).size == size


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "12", encode_token({"offset": -1}), encode_token({"offset": "3"}), encode_token([1])],
)
def test_a_token_no_list_call_made_is_refused_naming_next_token(token: Any) -> None:
    with pytest.raises(ValidationError, match="NextToken") as caught:
        Page.requested({"NextToken": token}, default_size=10)
    assert caught.value.field == "NextToken"
