"""Sphinx extension: the configuration reference, generated from the code.

Two directives, used by ``cli.rst``:

``.. twisted-asgi-options::``
    Every command-line option of ``twistd asgi`` (and ``python -m twisted_asgi``),
    read from :class:`twisted_asgi.tap.Options`: its flags, parameters and
    ``opt_*`` handlers, with the help text ``--help`` prints, the default and the
    :class:`~twisted_asgi.config.Config` field it sets. Each becomes a Sphinx
    ``option`` target.

``.. twisted-asgi-config::``
    Every :class:`~twisted_asgi.config.Config` field, from
    :func:`~twisted_asgi.config.describe_fields` and
    :func:`~twisted_asgi.config.zero_meaning`: its default, what 0 means, its
    documentation and a link to its option.

The directives emit reStructuredText and parse it in place, so the reference
is rebuilt from the code on every build. :func:`options_rst` and
:func:`config_rst` are the generators (``tests/test_docs.py`` checks them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PROGRAM = "twistd asgi"


@dataclass(frozen=True)
class Option:
    """One command-line option as the reference shows it."""

    name: str  # long name, without the dashes
    short: str | None
    takes_value: bool
    doc: str
    default: Any
    field: str | None  # the Config field it sets, if any


def _field_by_flag() -> dict[str, str]:
    from twisted_asgi.config import describe_fields

    return {flag[2:]: name for name, _default, _doc, flag in describe_fields() if flag}


def collect_options() -> list[Option]:
    """Every option ``twistd asgi --help`` lists, in its order."""
    from twisted_asgi.tap import Options

    options = Options()
    fields = _field_by_flag()
    shorts = {long: short for short, long in options.synonyms.items() if len(short) == 1}
    result = []
    for entry in options.longOpt:
        name = entry.rstrip("=")
        if name in ("help", "version"):
            continue
        result.append(
            Option(
                name=name,
                short=shorts.get(name),
                takes_value=entry.endswith("="),
                doc=" ".join((options.docs.get(name) or "").split()),
                default=options.defaults.get(name),
                field=fields.get(name),
            )
        )
    return result


def _metavar(option: Option) -> str:
    from twisted_asgi.tap import option_metavar

    return option_metavar(option.name)


def _literal(value: Any) -> str:
    """A default as the user would type it."""
    if isinstance(value, tuple):
        return "``" + ",".join(value) + "``" if value else "(none)"
    if value is None:
        return "(none)"
    if value == "":
        return "``''`` (empty)"
    text = f"``{value}``"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 and value % 1024 == 0:
        kib = value // 1024
        text += f" ({kib // 1024} MiB)" if kib % 1024 == 0 else f" ({kib} KiB)"
    return text


def escape_text(text: str) -> str:
    """Help text as plain reST: backslashes and stray markup characters kept
    literal, and ``--flags`` as literals (else Sphinx turns their ``--`` into
    an en dash, and a copied flag no longer works)."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")
    return re.sub(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", r"``\1``", text)


def options_rst() -> list[str]:
    """The ``.. option::`` entries for every command-line option, in the groups
    and order ``--help`` shows them."""
    from twisted_asgi.tap import group_options

    lines = [f".. program:: {PROGRAM}", ""]
    by_name = {option.name: option for option in collect_options()}
    for title, names in group_options(list(by_name)):
        lines += [f".. rubric:: {title}", ""]
        for name in names:
            lines += _option_lines(by_name[name])
    return lines


def _option_lines(option: Option) -> list[str]:
    """One ``.. option::`` entry: its forms, help text, default, setting and
    environment variable."""
    from twisted_asgi.tap import environment_variable

    forms = []
    value = f"<{_metavar(option)}>" if option.takes_value else ""
    if option.short:
        forms.append(f"-{option.short}{' ' + value if value else ''}")
    forms.append(f"--{option.name}{'=' + value if value else ''}")
    lines = [f".. option:: {', '.join(forms)}", "", "   " + (escape_text(option.doc) or "(undocumented)")]
    extra = []
    if option.takes_value and option.default not in (None, "") and "[default:" not in option.doc:
        extra.append(f"Default: {_literal(option.default)}.")
    if option.field:
        extra.append(f"Sets :ref:`{option.field} <config-{option.field}>`.")
    extra.append(f"Environment: ``{environment_variable(option.name)}``.")
    if extra:
        lines += ["", "   " + " ".join(extra)]
    lines.append("")
    return lines


def config_rst() -> list[str]:
    """A definition list entry for every :class:`~twisted_asgi.config.Config` field."""
    from twisted_asgi.config import describe_fields, zero_meaning

    lines = []
    for name, default, doc, flag in describe_fields():
        lines += [f".. _config-{name}:", "", f"``{name}``"]
        lines.append("   " + escape_text(" ".join(doc.split())))
        facts = [f"Default: {_literal(default)}."]
        zero = zero_meaning(name)
        if zero:
            facts.append(f"0 means: {zero}.")
        if name.startswith("timeout_"):
            facts.append("In seconds.")
        if flag:
            facts.append(f"Option: :option:`{PROGRAM} {flag}`.")
        else:
            facts.append("No command-line option; set it on ``Config``.")
        lines += ["", "   " + " ".join(facts), ""]
    return lines


def setup(app: Any) -> dict[str, Any]:
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    def directive(generate: Any) -> type:
        class Generated(SphinxDirective):
            has_content = False

            def run(self) -> list[Any]:
                from docutils import nodes

                container = nodes.container()
                source = f"<generated by {__name__}.{generate.__name__}>"
                self.state.nested_parse(StringList(generate(), source), self.content_offset, container)
                return list(container.children)

        return Generated

    app.add_directive("twisted-asgi-options", directive(options_rst))
    app.add_directive("twisted-asgi-config", directive(config_rst))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
