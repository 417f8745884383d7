"""Tests of :class:`twisted_asgi.config.Config`: validation errors that name the field,
documentation on every field, :func:`describe_fields`, :func:`zero_meaning` and ``replace()``.

The field lists are read from the dataclass, so fields added later are covered too.
"""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from twisted_asgi.config import Config, ConfigError, describe_fields, zero_meaning

FIELDS = dataclasses.fields(Config)
NUMERIC = [f.name for f in FIELDS if f.name.startswith(("limit_", "timeout_"))]
LIMITS = [name for name in NUMERIC if name.startswith("limit_")]
BOOLS = [f.name for f in FIELDS if f.type == "bool"]
STRINGS = [f.name for f in FIELDS if f.type in ("str", "str | None")]


def error_for(**changes) -> str:
    """The ConfigError message for a Config built with ``changes``."""
    with pytest.raises(ConfigError) as info:
        Config(**changes)
    return str(info.value)


def test_defaults_are_valid_and_frozen():
    """The default Config validates and cannot be changed in place."""
    config = Config()
    config.validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout_keep_alive = 1.0  # type: ignore[misc]


def test_config_error_is_a_value_error():
    """ConfigError is a ValueError, so callers that catch bad values catch it."""
    assert issubclass(ConfigError, ValueError)


# -- every number --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NUMERIC)
def test_negative_number_names_the_field(name):
    """A negative limit or timeout is refused with a message that starts with the field name."""
    assert error_for(**{name: -1}).startswith(f"{name} must be")


@pytest.mark.parametrize("value", ["10", None, True, False, [1], float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", NUMERIC)
def test_non_number_names_the_field(name, value):
    """Strings, None, bools, lists, NaN and infinities are not numbers, and the message says which field."""
    assert error_for(**{name: value}) == f"{name} must be a number, not {value!r}"


@pytest.mark.parametrize("name", LIMITS)
def test_fractional_limit_names_the_field(name):
    """A limit must be a whole number."""
    value = getattr(Config(), name) + 0.5
    assert error_for(**{name: value}) == f"{name} must be a whole number, not {value!r}"


@pytest.mark.parametrize("name", [n for n in NUMERIC if n.startswith("timeout_")])
def test_fractional_timeouts_are_fine(name):
    """Timeouts are seconds and may be fractional."""
    assert getattr(Config(**{name: 2.5}), name) == 2.5


@pytest.mark.parametrize("name", [n for n in NUMERIC if zero_meaning(n) is not None])
def test_zero_is_accepted_where_it_means_something(name):
    """Every field that documents what 0 means accepts 0."""
    assert getattr(Config(**{name: 0}), name) == 0


# -- every other field, by type -----------------------------------------------------------------


@pytest.mark.parametrize("name", BOOLS)
def test_bool_field_wrong_type_names_the_field(name):
    """A switch given a non-bool (a string that reads true, or 1) is refused, naming the field."""
    assert error_for(**{name: "no"}) == f"{name} must be bool, not 'no'"
    assert error_for(**{name: 1}).startswith(f"{name} must be bool")


@pytest.mark.parametrize("name", STRINGS)
def test_string_field_wrong_type_names_the_field(name):
    """A text field given a number is a ConfigError naming the field, not a TypeError."""
    assert error_for(**{name: 5}).startswith(f"{name} must be str")


# -- specific rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"limit_request_head_bytes": 1023}, "limit_request_head_bytes must be at least 1024"),
        ({"limit_receive_buffer_bytes": 0}, "limit_receive_buffer_bytes must be at least 1"),
        ({"lifespan": "yes"}, "lifespan must be 'auto', 'on' or 'off', not 'yes'"),
        ({"loop": "trio"}, "loop must be 'auto', 'asyncio' or 'uvloop', not 'trio'"),
        ({"root_path": "api"}, "root_path must start with '/' and not end with one, not 'api'"),
        ({"root_path": "/api/"}, "root_path must start with '/' and not end with one, not '/api/'"),
        ({"root_path": "/"}, "root_path must start with '/' and not end with one, not '/'"),
        ({"server_name": "a\r\nX-Injected: 1"}, "server_name must not contain CR, LF or NUL"),
        ({"server_name": "a\x00"}, "server_name must not contain CR, LF or NUL"),
        ({"limit_ws_queue": 0}, "limit_ws_queue must be at least 1"),
    ],
)
def test_specific_rules(changes, message):
    """Each field-specific rule gives its exact message, starting with the field name."""
    assert error_for(**changes) == message
    assert message.startswith(next(iter(changes)))


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"ws_allowed_origins": ["https://a"]}, "ws_allowed_origins"),
        ({"ws_allowed_origins": ("",)}, "ws_allowed_origins"),
        ({"forwarded_allow_ips": "127.0.0.1"}, "forwarded_allow_ips"),
        ({"forwarded_allow_ips": ("not-an-address",)}, "forwarded_allow_ips"),
        ({"proxy_protocol_allow_ips": ("10.0.0.0/33",)}, "proxy_protocol_allow_ips"),
        ({"proxy_headers_style": "both"}, "proxy_headers_style"),
        ({"root_path_header": "x prefix"}, "root_path_header"),
        ({"limit_proxy_protocol_bytes": 100}, "limit_proxy_protocol_bytes"),
        ({"workers": -1}, "workers"),
        ({"workers": True}, "workers"),
        ({"workers": 1.5}, "workers"),
    ],
)
def test_deployment_rules_name_the_field(changes, name):
    """Proxy, origin and worker settings are checked too, and the error names the field."""
    assert error_for(**changes).startswith(name)


def test_valid_non_defaults_are_accepted():
    """Reasonable non-default values pass validation."""
    config = Config(
        root_path="/api/v1",
        server_name=None,
        lifespan="off",
        loop="uvloop",
        limit_request_body_bytes=0,
        timeout_keep_alive=0.5,
        ws_allowed_origins=("https://*.example.com",),
        forwarded_allow_ips=("10.0.0.0/8", "*"),
    )
    assert config.root_path == "/api/v1" and config.server_name is None


# -- documentation -------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_field_has_doc_text(field):
    """Every field carries a sentence of documentation in its metadata."""
    doc = field.metadata.get("doc")
    assert isinstance(doc, str) and len(doc.split()) >= 4, field.name
    assert doc[0].isupper() and doc.rstrip().endswith((".", ")")), doc


def test_describe_fields():
    """describe_fields lists every field in declaration order with its default, doc and flag."""
    described = describe_fields()
    assert [row[0] for row in described] == [f.name for f in FIELDS]
    defaults = Config()
    for name, default, doc, flag in described:
        assert getattr(defaults, name) == default
        assert doc == Config.__dataclass_fields__[name].metadata["doc"]
        assert flag is None or flag.startswith("--")


def test_flags_are_unique_cli_names():
    """No two fields share a command-line flag, and every flag is a plain long option."""
    flags = [flag for _name, _default, _doc, flag in describe_fields() if flag is not None]
    assert len(flags) == len(set(flags))
    for flag in flags:
        assert flag.startswith("--") and flag[2:].replace("-", "").isalnum(), flag


def test_zero_meaning():
    """zero_meaning says what 0 means for a field, or None where 0 is not special."""
    assert zero_meaning("limit_request_body_bytes") == "no limit"
    assert zero_meaning("timeout_keep_alive") == "no keep-alive: close after each response"
    assert zero_meaning("limit_request_head_bytes") is None
    for name in NUMERIC:
        meaning = zero_meaning(name)
        assert meaning is None or (isinstance(meaning, str) and meaning)


# -- replace() --------------------------------------------------------------------------------


def test_replace_returns_a_changed_copy():
    """replace() returns a new Config with the change; the original is untouched."""
    original = Config()
    changed = original.replace(timeout_keep_alive=1.5, server_name=None)
    assert changed is not original
    assert (changed.timeout_keep_alive, changed.server_name) == (1.5, None)
    assert (original.timeout_keep_alive, original.server_name) == (5.0, "twisted-asgi")
    assert changed.replace() == changed


def test_replace_validates():
    """replace() validates the result like the constructor."""
    with pytest.raises(ConfigError, match=r"^timeout_send must be >= 0"):
        Config().replace(timeout_send=-5)


def test_replace_unknown_field():
    """replace() with a field that does not exist fails instead of being ignored."""
    with pytest.raises(TypeError):
        Config().replace(timeout_nonexistent=1)


# -- the --help sentences, made without regular expressions ---------------------------------


def _reference_sentence(doc: str, flags: dict[str, str]) -> str:
    """What tap's help sentence was with regular expressions (the reference)."""
    text = " ".join(doc.split())
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    sentence = text[: end.start() + 1] if end else text
    return _reference_flags(sentence, flags)


def _reference_flags(text: str, flags: dict[str, str]) -> str:
    return re.sub(r"\b(?:limit|timeout)_[a-z0-9_]+\b", lambda m: flags.get(m.group(0), m.group(0)), text)


_TRICKY = [
    "",
    ".",
    "e.g. limit_x. Then more.",
    "See i.e. timeout_send.",
    "limit_",
    "limit_a",
    "xlimit_a limit_a_ _limit_a limit_aB limit_a-b timeout_send.limit_ws_queue",
    "limit_request_body_bytes, timeout_keep_alive; (timeout_send) limit_éa limit_aé",
    "No period at all",
    "Two.  Spaces.\nNew line.",
    "  Leading. e.g\t. i.e.\n  trailing.  ",
    "timeout_timeout_x limit_limit_ limit__ limit_9",
]


@pytest.mark.parametrize("doc", [doc for _n, _d, doc, _f in describe_fields()] + _TRICKY)
def test_help_sentence_is_the_regular_expressions_one(doc):
    """tap's --help sentence for a field (first sentence, field names as flags)
    is what the regular expressions it replaced made, for every field's
    documentation and for text made to trip word boundaries and abbreviations."""
    from twisted_asgi.tap import _flags_for_fields, _help_sentence

    flags = {name: flag for name, _default, _doc, flag in describe_fields() if flag}
    flags.update({"limit_a": "--A", "limit_a_": "--A_", "limit_ws_queue": "--Q", "limit__": "--U"})
    assert _help_sentence(doc, flags) == _reference_sentence(doc, flags)
    assert _flags_for_fields(doc, flags) == _reference_flags(doc, flags)


def test_help_sentence_matches_on_random_text():
    """The same, on random strings over the characters that matter."""
    from twisted_asgi.tap import _flags_for_fields, _help_sentence

    rng = random.Random(7)
    alphabet = ["limit_", "timeout_", "a", "z", "9", "_", ".", " ", "  ", "e.g", "i.e", "-", "A", "é", "\n", "\t"]
    flags = {"limit_a": "--A", "timeout_z": "--Z", "limit__": "--U"}
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(14)))
        assert _help_sentence(text, flags) == _reference_sentence(text, flags), text
        assert _flags_for_fields(text, flags) == _reference_flags(text, flags), text


# -- Config is the class @dataclass(frozen=True, slots=True) made --------------------------


def test_config_behaves_as_the_frozen_dataclass():
    """Config is made without dataclasses' code generation (config._frozen_record),
    yet behaves as the frozen slotted dataclass it was: equality and hash by
    value, its repr, positional and keyword construction, no instance dict,
    copies and pickles, and no assignment or deletion."""
    import copy
    import pickle

    config = Config(timeout_send=3.0)
    assert config == Config(timeout_send=3.0) and hash(config) == hash(Config(timeout_send=3.0))
    assert config != Config() and config != object()
    names = [f.name for f in FIELDS]
    assert repr(config) == "Config(" + ", ".join(f"{n}={getattr(config, n)!r}" for n in names) + ")"
    assert Config(20000, 7).limit_request_headers == 7 and Config(20000).limit_request_head_bytes == 20000
    assert not hasattr(config, "__dict__") and Config.__slots__ == tuple(names) == Config.__match_args__
    for clone in (copy.copy(config), copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert clone == config and type(clone) is Config
    with pytest.raises(dataclasses.FrozenInstanceError):
        del config.timeout_send
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Config(nope=1)
    with pytest.raises(TypeError, match="multiple values for argument 'limit_request_head_bytes'"):
        Config(20000, limit_request_head_bytes=30000)
    with pytest.raises(TypeError, match="positional arguments"):
        Config(*range(len(names) + 1))


def test_config_is_a_dataclass_to_dataclasses():
    """dataclasses sees a frozen dataclass with the same fields, defaults and
    metadata as describe_fields() (its view is made at the first read), and
    its replace() and asdict() work; the signature names every field."""
    import inspect

    config = Config()
    assert dataclasses.is_dataclass(Config) and dataclasses.is_dataclass(config)
    assert Config.__dataclass_params__.frozen
    assert [(f.name, f.default, f.metadata["doc"], f.metadata["flag"]) for f in FIELDS] == describe_fields()
    assert dataclasses.replace(config, timeout_send=2.0) == config.replace(timeout_send=2.0) != config
    assert dataclasses.asdict(config)["loop"] == "auto" and len(dataclasses.asdict(config)) == len(FIELDS)
    parameters = inspect.signature(Config).parameters
    assert [(p.name, p.default) for p in parameters.values()] == [(f.name, f.default) for f in FIELDS]
