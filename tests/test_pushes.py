"""Reading one message of the account stream (:func:`monitor.pushes.read_message`)."""

from __future__ import annotations

import pytest

from monitor.errors import ParseError
from monitor.parse import parse_body
from monitor.pushes import read_message

A = '{"account_number":"1@vision","restriction":"none","cash":12.5}'


def test_a_balances_message_is_read_as_a_poll_body() -> None:
    message = read_message('{"t":"b","data":[' + A + "]}")
    assert message.type == "b"
    assert message.balances is not None
    assert str(message.balances.accounts["1@vision"].get("cash")) == "12.50"


def test_an_unchanged_record_is_reused_and_not_named_changed() -> None:
    previous = parse_body(("[" + A + "]").encode()).accounts
    message = read_message('{"t":"b","data":[' + A + "]}", previous)
    assert message.balances is not None
    assert message.balances.changed == frozenset()


def test_a_number_beyond_a_float_is_read_exactly() -> None:
    text = '{"t":"b","data":[{"account_number":"1@x","cash":1234567890123456.78}]}'
    message = read_message(text)
    assert message.balances is not None
    assert str(message.balances.accounts["1@x"].get("cash")) == "1234567890123456.78"


def test_an_error_message_has_its_code_and_description_on_one_line() -> None:
    message = read_message('{"t":"e","code":"auth\\nfailed","description":"no"}')
    assert (message.type, message.code, message.description) == ("e", "auth failed", "no")


def test_an_unknown_type_is_just_its_type() -> None:
    message = read_message('{"t":"o","data":[{"x":1}]}')
    assert (message.type, message.balances) == ("o", None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "stream message is not JSON"),
        ("[1]", "stream message is not a JSON object"),
        ('{"data":[]}', "stream message has no type"),
        ('{"t":"b","data":{}}', "balances message has no list of accounts in data"),
    ],
)
def test_an_unusable_message_is_a_parse_error(text: str, error: str) -> None:
    with pytest.raises(ParseError, match=error):
        read_message(text)


def test_an_error_message_without_code_or_description() -> None:
    message = read_message('{"t":"e"}')
    assert (message.code, message.description) == (None, None)
