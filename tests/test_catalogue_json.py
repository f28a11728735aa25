"""The catalogue's step-wise JSON decoding gives what `json.loads` gives, and rejects what a
strict decoder rejects, naming the position."""

from __future__ import annotations

import json

import pytest

from gateway.services import catalogue_json

DOCS = [
    '{"version": 3, "offers": [{"id": "a", "zones": ["z1"]}, {"id": "b", "payload": {"x": [1, 2.5, null]}}]}',
    '{"offers": [], "version": 1}',
    ' \n{ "version" : 1 ,\t"offers" : [ { } , [ ] , "s" , 1e3 , true ] , "extra" : {"offers": [1]} } \r\n',
    '{"version": 1, "offers": [{"id": "dup"}], "offers": [{"id": "last wins"}]}',
    '{"offers": "not a list", "version": 1}',
    '{"name": "Dübel \\u00fc \\"quoted\\""}',
    "[1, 2, 3]",
    "{}",
    "42",
]


@pytest.mark.parametrize("doc", DOCS)
def test_same_value_as_json_loads(doc: str) -> None:
    assert catalogue_json.loads(doc.encode()) == json.loads(doc)


@pytest.mark.parametrize(
    "doc",
    [
        '{"version": 1, "offers": [{"id": "a"} {"id": "b"}]}',  # a missing comma between offers
        '{"version": 1, "offers": [{"id": "a"},]}',  # a trailing comma
        '{"version": 1, "offers": [{"id": "a"}]',  # truncated
        '{"version": 1 "offers": []}',
        "{version: 1}",
        '{"version": 1, "offers": [NaN]}',
        '{"version": 1, "offers": [Infinity]}',
        '{"version": 1} trailing',
        "",
    ],
)
def test_rejects_what_is_not_json(doc: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        catalogue_json.loads(doc.encode())


def test_invalid_utf8_is_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError, match="not UTF-8"):
        catalogue_json.loads(b'{"version": 1, "offers": ["\xff"]}')


def test_error_names_the_position_in_the_offers() -> None:
    doc = '{"version": 1, "offers": [{"id": "a"}, {"id": "b" "zones": []}]}'
    with pytest.raises(json.JSONDecodeError) as e:
        catalogue_json.loads(doc.encode())
    assert e.value.pos == doc.index('"zones"')
