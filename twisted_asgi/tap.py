"""``twistd asgi`` (and ``python -m twisted_asgi``): options and the service.

Importing this module, or parsing options with it, installs nothing: parsing
validates (``usage.UsageError`` for bad input), and the asyncio reactor is
installed by ``makeService`` (or ``python -m twisted_asgi``) once the options are
known (``--loop``, and twistd's own ``--reactor``). Application loading is
:mod:`.appload`'s; endpoint strings are :mod:`.listeners`'.
"""

from __future__ import annotations

import atexit
import getopt
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from twisted.python import usage

from .appload import AppLoadError, load_app
from .config import Config, ConfigError, describe_fields, zero_meaning
from .listeners import ListenError

__all__ = ["Options", "makeService", "load_app", "AppLoadError", "build_service", "endpoints_from_options"]

DEFAULT_ENDPOINT = "tcp:port=8000:interface=127.0.0.1"


def _default(field: str) -> Any:
    """A :class:`Config` field's default: options take theirs from there, not a copy."""
    return next(default for name, default, _doc, _flag in describe_fields() if name == field)


def _config_parameters() -> list[list[Any]]:
    """One ``--flag`` per :class:`Config` field that has one, typed from its default."""
    fields = describe_fields()
    flags = {name: flag for name, _default, _doc, flag in fields if flag}
    params = []
    for name, default, doc, flag in fields:
        if flag is None or not name.startswith(("limit_", "timeout_")):
            continue
        coerce = float if name.startswith("timeout_") else int
        zero = zero_meaning(name)
        unit = "seconds" if name.startswith("timeout_") else None
        notes = "; ".join(filter(None, [unit, f"0 = {_flags_for_fields(zero, flags)}" if zero else None]))
        text = f"{_help_sentence(doc, flags)} [default: {default}{'; ' + notes if notes else ''}]"
        params.append([flag[2:], None, None, text, coerce])
    return params


def _help_sentence(doc: str, flags: dict[str, str]) -> str:
    """The first sentence of a Config field's documentation, for ``--help`` (the
    rest, where the default came from, is in the configuration reference), with
    other fields named by their ``flags``."""
    text = " ".join(doc.split())
    # The first ". " or final ".", not that of "e.g." or "i.e." (string
    # operations, as below: these run for every option at every start-up,
    # where compiling a regular expression costs more than the search).
    end = text.find(".")
    while end >= 0:
        if text[end + 1 : end + 2] in ("", " ") and text[max(end - 3, 0) : end] not in ("e.g", "i.e"):
            return _flags_for_fields(text[: end + 1], flags)
        end = text.find(".", end + 1)
    return _flags_for_fields(text, flags)


#: What follows ``limit_``/``timeout_`` in a Config field's name.
_FIELD_NAME_TAIL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _flags_for_fields(text: str, flags: dict[str, str]) -> str:
    """``text`` with each Config field it names (a whole word ``limit_...`` or
    ``timeout_...`` of lower-case letters, digits and ``_``) replaced by that
    field's flag."""
    parts = []
    done = 0
    start = 0
    while True:
        found = [i for i in (text.find("limit_", start), text.find("timeout_", start)) if i >= 0]
        if not found:
            break
        i = min(found)
        start = i + 1
        if i > 0 and _is_word(text[i - 1]):
            continue
        j = i + (6 if text.startswith("limit_", i) else 8)
        if j == len(text) or text[j] not in _FIELD_NAME_TAIL:
            continue
        while j < len(text) and text[j] in _FIELD_NAME_TAIL:
            j += 1
        if j < len(text) and _is_word(text[j]):
            continue
        name = text[i:j]
        parts += [text[done:i], flags.get(name, name)]
        done = start = j
    return "".join(parts) + text[done:] if parts else text


#: ``--help`` and the configuration reference list the options in these groups,
#: in this order: by name first, then ``limit-``/``timeout-`` by prefix.
OPTION_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Listeners", ("endpoint", "listen", "bind", "port", "unix-socket", "fd", "backlog")),
    (
        "Application",
        (
            "django",
            "factory",
            "app-dir",
            "lifespan",
            "root-path",
            "loop",
            "reload",
            "reload-dir",
            "reload-include",
            "reload-exclude",
        ),
    ),
    (
        "Protocols",
        (
            "no-http2",
            "no-h2c-prior-knowledge",
            "no-ws-over-h2",
            "h2c-upgrade",
            "no-h2c-upgrade",
            "no-websocket",
            "no-ws-compression",
            "ws-allowed-origin",
            "server-name",
            "no-server-name",
            "no-early-hints",
        ),
    ),
    ("Limits", ("limit-",)),
    ("Timeouts", ("graceful-timeout", "timeout-")),
    (
        "Behind proxies",
        (
            "proxy-headers",
            "proxy-headers-trust",
            "forwarded-allow-ips",
            "proxy-headers-style",
            "root-path-header",
            "proxy-protocol",
            "proxy-protocol-allow-ips",
            "limit-proxy-protocol",
            "timeout-proxy-protocol",
        ),
    ),
    (
        "Workers",
        (
            "workers",
            "timeout-worker-start",
            "timeout-worker-restart",
            "limit-worker-requests",
            "limit-worker-requests-jitter",
            "limit-worker-rss",
            "timeout-worker-lifetime",
        ),
    ),
    ("Logging and metrics", ("access-log", "metrics-endpoint")),
    ("Help", ("help", "version")),
]


# Options whose value names a thing better than VALUE.
_METAVARS = {
    "endpoint": "ENDPOINT",
    "listen": "ENDPOINT",
    "bind": "ADDRESS",
    "port": "PORT",
    "unix-socket": "PATH",
    "fd": "FD",
    "access-log": "FILE",
    "metrics-endpoint": "ENDPOINT",
    "app-dir": "DIR",
    "django": "SETTINGS",
    "ws-allowed-origin": "ORIGIN",
    "root-path": "PATH",
    "server-name": "NAME",
    "root-path-header": "HEADER",
    "forwarded-allow-ips": "ADDRESSES",
    "proxy-protocol-allow-ips": "ADDRESSES",
    "proxy-headers-trust": "NAMES",
    "limit-worker-rss": "MIB",
    "reload-dir": "DIR",
    "reload-include": "PATTERN",
    "reload-exclude": "PATTERN",
}


def option_metavar(name: str) -> str:
    """What an option's value is called in ``--help`` and the reference."""
    if name in _METAVARS:
        return _METAVARS[name]
    if name.startswith("timeout-") or name == "graceful-timeout":
        return "SECONDS"
    if name.startswith(("limit-", "workers", "backlog")):
        return "N"
    return "VALUE"


def option_help(doc: str) -> str:
    """An option's help text for ``--help``: one run of words, without the
    vulnerability references (they are in the configuration reference)."""
    text = " ".join(doc.split())
    text = re.sub(r"\s*\([^()]*CVE-[^()]*\)", "", text)
    text = re.sub(r":\s*CVE-[\d, -]+(?=\))", "", text)
    return text


def group_options(names: list[str]) -> list[tuple[str, list[str]]]:
    """``names`` (long option names, in the parser's order) sorted into
    :data:`OPTION_GROUPS`: exact names first, then prefixes; anything left over
    goes to a last "Other" group."""
    left = list(names)
    chosen: dict[str, list[str]] = {title: [] for title, _ in OPTION_GROUPS}
    for exact in (True, False):
        for title, keys in OPTION_GROUPS:
            for key in keys:
                if exact and not key.endswith("-"):
                    if key in left:
                        chosen[title].append(key)
                        left.remove(key)
                elif not exact and key.endswith("-"):
                    for name in [n for n in left if n.startswith(key)]:
                        chosen[title].append(name)
                        left.remove(name)
    groups = [(title, chosen[title]) for title, _ in OPTION_GROUPS if chosen[title]]
    return groups + ([("Other", left)] if left else [])


#: Options read from no environment variable (they act, they set nothing).
_NOT_FROM_ENVIRONMENT = frozenset({"help", "version"})
#: Options that may be given several times.
_REPEATABLE = frozenset({"endpoint", "listen", "ws-allowed-origin", "reload-dir", "reload-include", "reload-exclude"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def environment_variable(option: str) -> str:
    """The environment variable an option is also read from: ``--limit-request-body``
    is ``TWISTED_ASGI_LIMIT_REQUEST_BODY``."""
    return "TWISTED_ASGI_" + option.upper().replace("-", "_")


def version_text() -> str:
    """``twisted-asgi X.Y.Z`` and, on a second line, the versions of what it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    parts = []
    for name in ("Twisted", "h2", "autobahn", "pyOpenSSL", "httptools", "uvloop"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return f"twisted-asgi {__version__}\n{', '.join(parts)}; Python {sys.version.split()[0]}"


class Options(usage.Options):
    """Command-line options of ``twistd asgi`` and ``python -m twisted_asgi``."""

    synopsis = "[options] module:application"
    #: The settings the options describe, made when they are parsed.
    config: Config
    longdesc = (
        "Serve an ASGI application (HTTP/1.1, HTTP/2, WebSocket, TLS, ASGI lifespan) on one or more Twisted "
        "endpoints. The application is 'module:attribute' (attribute defaults to "
        "'application'), e.g. 'myproject.asgi:application'. Without any listener "
        f"option the server listens on {DEFAULT_ENDPOINT}."
    )

    optFlags = [
        ["no-server-name", None, "Send no Server header."],
        ["factory", None, "Treat the application as a factory: call it with no arguments to get the app."],
        ["no-websocket", None, "Serve no WebSocket: an 'Upgrade: websocket' request is plain HTTP to the app."],
        ["no-ws-compression", None, "Do not negotiate permessage-deflate on WebSockets."],
        ["no-http2", None, "Serve no HTTP/2: no 'h2' in ALPN, no h2c (HTTP/1.1 only)."],
        [
            "no-h2c-prior-knowledge",
            None,
            "On cleartext listeners, do not take connections that open with the HTTP/2 preface.",
        ],
        [
            "no-ws-over-h2",
            None,
            "Serve no WebSocket over HTTP/2 (RFC 8441 extended CONNECT): HTTP/2 clients use HTTP/1.1 for WebSocket.",
        ],
        [
            "h2c-upgrade",
            None,
            "On cleartext listeners, switch a bodiless request with 'Upgrade: h2c' to HTTP/2. Off by "
            "default: behind a proxy that forwards Upgrade it lets clients smuggle requests past the "
            "proxy's rules (see the HTTP/2 page of the documentation).",
        ],
        ["no-h2c-upgrade", None, "The default (ignore 'Upgrade: h2c'); kept so older command lines still work."],
        [
            "no-early-hints",
            None,
            "Do not offer apps early hints (no '103 Early Hints' responses), e.g. behind a "
            "proxy that takes a 103 for the final response, as nginx 1.22 does.",
        ],
        [
            "proxy-headers",
            None,
            "Believe X-Forwarded-* (or Forwarded) headers about client, scheme, host and prefix "
            "from peers in --forwarded-allow-ips.",
        ],
        [
            "proxy-protocol",
            None,
            "Every listener expects a PROXY protocol v1/v2 header (before TLS) from peers in "
            "--proxy-protocol-allow-ips; others are closed.",
        ],
        [
            "reload",
            None,
            "Development: restart the serving process when a watched file changes (--reload-dir, "
            "--reload-include), keeping the listening sockets. Foreground only; not with --workers N.",
        ],
    ]

    optParameters = [
        ["bind", "b", None, "Address to listen on, with --port (translated to a tcp:/tcp6: endpoint)."],
        ["port", "p", None, "TCP port to listen on (with --bind, default interface 127.0.0.1).", int],
        ["unix-socket", "u", None, "Path of a unix socket to listen on (a unix: endpoint)."],
        ["fd", None, None, "Listen on an already bound and listening socket, by file descriptor number.", int],
        [
            "root-path",
            None,
            _default("root_path"),
            "ASGI root_path: the URL prefix the app is mounted at, when a proxy strips it.",
        ],
        ["server-name", None, _default("server_name"), "Value of the Server response header."],
        ["lifespan", None, _default("lifespan"), "ASGI lifespan: auto, on or off."],
        [
            "loop",
            None,
            _default("loop"),
            "Event loop under the asyncio reactor: auto (uvloop if installed, else asyncio), "
            "uvloop (about a tenth less CPU per request) or asyncio.",
        ],
        ["access-log", None, None, "Write an access log line per request to FILE ('-' for standard output)."],
        [
            "metrics-endpoint",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint string, a listener of "
            "its own (e.g. tcp:port=9100:interface=127.0.0.1); off by default.",
        ],
        ["app-dir", None, ".", "Directory put first on sys.path before importing the application."],
        [
            "forwarded-allow-ips",
            None,
            None,
            "Comma-separated IPs, CIDR networks, 'unix' or '*' whose proxy headers are believed "
            "[default: 127.0.0.0/8,::1,unix].",
        ],
        [
            "proxy-headers-style",
            None,
            _default("proxy_headers_style"),
            "Proxy headers to read: x-forwarded or forwarded (RFC 7239).",
        ],
        [
            "root-path-header",
            None,
            _default("root_path_header"),
            "Header a trusted proxy puts the stripped URL prefix in (becomes root_path); '' for none.",
        ],
        [
            "proxy-headers-trust",
            None,
            None,
            "Comma-separated list of what a trusted proxy's headers may set: for, proto, host, port, "
            "prefix [default: for,proto]. Name one only when the proxy overwrites that header.",
        ],
        [
            "proxy-protocol-allow-ips",
            None,
            None,
            "Comma-separated IPs, CIDR networks, 'unix' or '*' allowed to send PROXY protocol headers "
            "[default: 127.0.0.0/8,::1,unix].",
        ],
        [
            "workers",
            None,
            _default("workers"),
            "Serve from N worker processes sharing the listeners (restarted when they die; SIGHUP: rolling "
            "restart); 0 = this process only.",
            int,
        ],
        [
            "django",
            None,
            None,
            "Serve the Django project with this settings module (sets DJANGO_SETTINGS_MODULE if unset); "
            "the application argument is then optional (default: the ASGI_APPLICATION setting, else the "
            "twisted-asgi Django adapter).",
        ],
    ] + _config_parameters()

    def __init__(self) -> None:
        super().__init__()
        self["endpoints"] = []

    def getUsage(self, width: int | None = None) -> str:
        """The options in groups, most used first (see :data:`OPTION_GROUPS`),
        each with the short help a user needs; the reasons behind each default
        are in the configuration reference (docs/cli.rst)."""
        if not width:
            width = int(os.environ.get("COLUMNS", "80"))
        width = max(width, 60)
        shorts = {long: short for short, long in self.synonyms.items() if len(short) == 1}
        takes_value = {opt.rstrip("="): opt.endswith("=") for opt in self.longOpt}
        column = 32
        text = [""]
        for title, names in group_options(list(takes_value)):
            text.append(f"{title}:")
            for name in names:
                short = f"-{shorts[name]}, " if name in shorts else "    "
                head = f"  {short}--{name}" + (f"={option_metavar(name)}" if takes_value[name] else "")
                doc = option_help(self.docs.get(name) or "")
                default = self.defaults.get(name)
                if takes_value[name] and default not in (None, "", []) and "[default:" not in doc:
                    doc += f" [default: {default}]"
                lines = textwrap.wrap(doc, width - column) or [""]
                if len(head) + 2 > column:
                    text.append(head)
                else:
                    text.append(head.ljust(column) + lines.pop(0))
                text.extend(" " * column + line for line in lines)
            text.append("")
        text.extend(textwrap.wrap(self.longdesc, width))
        text.append("")
        text.extend(
            textwrap.wrap(
                "Every option can also be set in the environment as TWISTED_ASGI_<OPTION> "
                "(--workers 4 is TWISTED_ASGI_WORKERS=4; a flag takes 1 or 0; a repeatable "
                "option one value per line), and the application as TWISTED_ASGI_APP; "
                "the command line wins.",
                width,
            )
        )
        return "\n".join(text) + "\n"

    def opt_version(self) -> None:
        """Print twisted-asgi's version and those it runs on, then exit."""
        print(version_text())
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        # Kept for --workers: each worker is started with these same options
        # (and inherits the same environment).
        self.argv = list(sys.argv[1:] if options is None else options)
        #: Option name -> the TWISTED_ASGI_* variable it was read from.
        self.from_env: dict[str, str] = {}
        try:
            super().parseOptions(self.command_line(self.argv, os.environ))
        except usage.UsageError as exc:
            message = self.usage_problem(exc)
            if getattr(self, "parent", None) is not None:
                # Under twistd, which would print its whole --help first: one line.
                print(f"twistd asgi: {message}\nTry 'twistd asgi --help'.", file=sys.stderr)
                raise SystemExit(2) from None
            raise usage.UsageError(message) from None

    def usage_problem(self, exc: usage.UsageError) -> str:
        """A usage error in the user's terms: the option and what it takes."""
        text = str(exc)
        prefix = "Parameter type enforcement failed: "
        if not text.startswith(prefix):
            return text
        detail = text[len(prefix) :]
        quoted = re.search(r"'(.*)'$", detail)
        if quoted is None:
            return detail
        value = quoted.group(1)
        kind = "a whole number" if "int()" in detail else "a number"
        option = self._option_given(value)
        if option is None:
            for name, variable in self.from_env.items():
                if os.environ.get(variable, "").strip() == value:
                    return f"{variable} (--{name}) must be {kind}, not {value!r}"
            return f"{kind} was expected, not {value!r}"
        return f"--{option} must be {kind}, not {value!r}"

    def _option_given(self, value: str) -> str | None:
        """The long name of the option that was given ``value`` on the command line."""
        argv = self.argv
        for index, arg in enumerate(argv):
            following = argv[index + 1] if index + 1 < len(argv) else None
            if arg == "--" or not arg.startswith("-"):
                continue
            if arg.startswith("--"):
                name, equals, given = arg[2:].partition("=")
                if (equals and given == value) or (not equals and following == value):
                    return str(self.synonyms.get(name, name))
            else:
                letter, attached = arg[1:2], arg[2:]
                if attached == value or (not attached and following == value):
                    return str(self.synonyms.get(letter, letter))
        return None

    def command_line(self, argv: list[str], environ: Mapping[str, str]) -> list[str]:
        """What Twisted's parser is given for ``argv``, read once with GNU getopt
        rules (a malformed command line is left as it is, for the parser to say how):

        * every option before the application, so that ``app:application --port
          8000`` works as uvicorn users type it (Twisted's parser stops at the
          first argument that is not an option);
        * an option that takes one value given twice is a usage error (``-p 1 -p
          2`` would listen on the last only); repeatable ones may repeat;
        * before them, the options set in ``environ`` as ``TWISTED_ASGI_<OPTION>``
          (``--limit-request-body`` from ``TWISTED_ASGI_LIMIT_REQUEST_BODY``) that
          the command line does not give: the command line wins. A flag takes
          1/true/yes/on or 0/false/no/off; a repeatable option (``--endpoint``,
          ``--ws-allowed-origin``, ``--reload-dir``/``-include``/``-exclude``)
          several values, one per line (or comma-separated on one line). ``TWISTED_ASGI_APP`` is the application
          when the command line names none.

        :raises usage.UsageError: an option given twice, or a flag's variable
            holding another value.
        """
        try:
            opts, args = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.GetoptError:
            return argv
        takes_value = {opt.rstrip("="): opt.endswith("=") for opt in self.longOpt}
        ordered: list[str] = []
        named: list[str] = []
        for opt, value in opts:
            named.append(str(self.synonyms.get(opt.lstrip("-"), opt.lstrip("-"))))
            if opt.startswith("--"):
                ordered.append(f"{opt}={value}" if f"{opt[2:]}=" in self.longOpt else opt)
            else:
                ordered += [opt, value] if f"{opt[1]}:" in self.shortOpt else [opt]
        given = set(named)
        for name in given:
            if takes_value.get(name) and name not in _REPEATABLE and named.count(name) > 1:
                hint = " (several listeners: -e, once each)" if name in ("port", "bind", "unix-socket", "fd") else ""
                raise usage.UsageError(f"--{name} given more than once{hint}")
        found: list[str] = []
        for name, has_value in takes_value.items():
            if name in given or name in _NOT_FROM_ENVIRONMENT:
                continue
            variable = environment_variable(name)
            raw = environ.get(variable)
            if raw is None:
                continue
            self.from_env[name] = variable
            if not has_value:
                word = raw.strip().lower()
                if word in _TRUE:
                    found.append(f"--{name}")
                elif word not in _FALSE:
                    raise usage.UsageError(f"{variable} must be 1, true, yes or on (or 0, false, no, off), not {raw!r}")
                continue
            if name in _REPEATABLE:
                values = raw.splitlines() if "\n" in raw.strip() else raw.split(",")
                found += [f"--{name}={value.strip()}" for value in values if value.strip()]
            else:
                found.append(f"--{name}={raw}")
        if not args and environ.get("TWISTED_ASGI_APP"):
            args = [environ["TWISTED_ASGI_APP"]]
        return [*found, *ordered, "--", *args] if args else [*found, *ordered]

    def opt_endpoint(self, description: str) -> None:
        """A Twisted server endpoint string to listen on; repeatable
        (tcp:, tcp6:, unix:, ssl:, systemd:, ...)."""
        self["endpoints"].append(description)

    opt_e = opt_endpoint

    def opt_listen(self, description: str) -> None:
        """The same as --endpoint, as twistd web spells it; repeatable."""
        self.opt_endpoint(description)

    def opt_ws_allowed_origin(self, origin: str) -> None:
        """An Origin a WebSocket handshake may come from ('*' wildcards allowed,
        e.g. https://*.example.com); repeatable. Others get 403. Default: any."""
        self.setdefault("ws-allowed-origins", []).append(origin)

    def opt_reload_dir(self, directory: str) -> None:
        """A directory --reload watches, recursively; repeatable. Default: the
        application directory (--app-dir)."""
        self.setdefault("reload-dirs", []).append(directory)

    def opt_reload_include(self, pattern: str) -> None:
        """A glob pattern of files whose change restarts the server under --reload
        (e.g. '*.html'); repeatable, added to '*.py'."""
        self.setdefault("reload-includes", []).append(pattern)

    def opt_reload_exclude(self, pattern: str) -> None:
        """A glob pattern of files --reload ignores (wins over --reload-include);
        repeatable. Editor, bytecode, .git and virtualenv files are always ignored."""
        self.setdefault("reload-excludes", []).append(pattern)

    def parseArgs(self, application: str | None = None) -> None:
        if application is None and not self["django"]:
            raise usage.UsageError(
                "the ASGI application to serve is required, e.g. myproject.asgi:application "
                "(or --django myproject.settings)"
            )
        self["application"] = application

    def postOptions(self) -> None:
        if self["loop"] not in ("auto", "asyncio", "uvloop"):
            raise usage.UsageError(f"--loop must be auto, asyncio or uvloop, not {self['loop']!r}")
        if self["h2c-upgrade"] and self["no-h2c-upgrade"]:
            raise usage.UsageError("--h2c-upgrade and --no-h2c-upgrade contradict each other")
        if self["lifespan"] not in ("auto", "on", "off"):
            raise usage.UsageError(f"--lifespan must be auto, on or off, not {self['lifespan']!r}")
        self._check_workers()
        # Validation only, as Twisted's own taps do: no reactor is installed
        # here (makeService does it), so options parse in-process in tests.
        try:
            self.config = config_from_options(self)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        for description in endpoints_from_options(self):
            problem = check_endpoint(description)
            if problem is not None:
                raise usage.UsageError(f"bad endpoint {description!r}: {problem}")

    def _check_workers(self) -> None:
        """Recycling needs workers; --reload is one foreground worker."""
        recycling = [
            name for name in ("limit-worker-requests", "limit-worker-rss", "timeout-worker-lifetime") if self.get(name)
        ]
        if recycling and not self["workers"]:
            raise usage.UsageError(f"--{recycling[0]} recycles worker processes: it needs --workers N")
        if not self["reload"]:
            return
        if self["workers"] > 1:
            raise usage.UsageError(
                "--reload restarts one serving process: it cannot be combined with --workers N (N > 1)"
            )
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("nodaemon"):
            raise usage.UsageError("--reload is for the foreground: run twistd with -n (twistd -n asgi --reload ...)")
        for directory in self.get("reload-dirs") or ():
            if not os.path.isdir(directory):
                raise usage.UsageError(f"--reload-dir {directory}: no such directory")


def check_endpoint(description: str) -> str | None:
    """What is wrong with an endpoint string, or None: it is parsed as it will be
    listened on (no reactor is needed to parse), then checked for what the parser
    accepts but cannot work. ``fd:`` strings are checked when adopted."""
    from .listeners import endpoint_from_string

    if description.startswith("fd:"):
        return None
    try:
        endpoint_from_string(None, description)
    except Exception as exc:  # noqa: BLE001 - any parser error becomes the one line the user sees
        return endpoint_problem(description, exc)
    return endpoint_problem(description)


def install_reactor(options: Options) -> None:
    """Install Twisted's asyncio reactor over the chosen loop, before anything
    imports the default one; a clear error when another reactor is installed.

    Twisted's reactor module is imported without Twisted's TLS support
    (pyOpenSSL), which is imported when first used
    (:func:`twisted_asgi._upstream.twisted_imports.import_reactor`); where that
    cannot be done, one line says why.

    :raises SystemExit: with a one-line message.
    """
    from ._upstream.twisted_imports import import_reactor

    why = import_reactor()
    from .reactor import ReactorError, install_asyncio_reactor

    if why is not None and why not in _said:
        _said.add(why)
        from twisted.logger import Logger

        Logger(namespace="twisted_asgi.reactor").info(
            "Twisted's TLS support is imported at start-up (a slower start, the same server): {why}", why=why
        )
    try:
        install_asyncio_reactor(options["loop"])
    except ReactorError as exc:
        raise SystemExit(f"twistd asgi: {exc}") from None


#: What :func:`install_reactor` has said about importing the reactor (once each).
_said: set[str] = set()


def config_from_options(options: Options) -> Config:
    """The :class:`Config` the options describe."""
    values: dict[str, Any] = {
        "root_path": options["root-path"],
        "lifespan": options["lifespan"],
        "loop": options["loop"],
        "server_name": None if options["no-server-name"] else options["server-name"],
        "websocket": not options["no-websocket"],
        "ws_compression": not options["no-ws-compression"],
        "http2": not options["no-http2"],
        "h2c_prior_knowledge": not options["no-h2c-prior-knowledge"],
        "h2c_upgrade": bool(options["h2c-upgrade"]),
        "ws_over_h2": not options["no-ws-over-h2"],
        "early_hints": not options["no-early-hints"],
        "ws_allowed_origins": tuple(options.get("ws-allowed-origins") or ()),
        "proxy_headers": bool(options["proxy-headers"]),
        "proxy_headers_style": options["proxy-headers-style"],
        "root_path_header": options["root-path-header"],
        "proxy_protocol": bool(options["proxy-protocol"]),
        "workers": options["workers"],
        "reload": bool(options["reload"]),
        "reload_dirs": tuple(options.get("reload-dirs") or ()),
        "reload_include": ("*.py", *(p for p in options.get("reload-includes") or () if p != "*.py")),
        "reload_exclude": tuple(options.get("reload-excludes") or ()),
    }
    for name in ("forwarded_allow_ips", "proxy_protocol_allow_ips", "proxy_headers_trust"):
        if options[name.replace("_", "-")] is not None:
            values[name] = tuple(p.strip() for p in options[name.replace("_", "-")].split(",") if p.strip())
    for name, _default, _doc, flag in describe_fields():
        if flag is not None and name not in values:
            value = options.get(flag[2:])
            if value is not None:
                values[name] = value
    return Config(**values)


def _tcp_endpoint(host: str, port: int) -> str:
    if ":" in host:  # IPv6: colons in an endpoint string are escaped
        return f"tcp6:port={port}:interface={host.strip('[]').replace(':', chr(92) + ':')}"
    return f"tcp:port={port}:interface={host}"


#: :data:`twisted_asgi.workers.ENV`: the environment variable that makes a
#: process a worker (a test checks the two agree).
WORKER_ENV = "TWISTED_ASGI_WORKER"


def _worker_settings() -> dict[str, Any] | None:
    """:func:`twisted_asgi.workers.worker_settings`, without importing the
    supervisor's module into a server that is no worker (the usual case)."""
    if WORKER_ENV not in os.environ and "twisted_asgi.workers" not in sys.modules:
        return None
    from .workers import worker_settings

    return worker_settings()


def endpoints_from_options(options: Options) -> list[str]:
    """Endpoint strings from ``--endpoint`` and the Daphne-style shorthands
    (in a worker: the inherited sockets the supervisor passed)."""
    settings = _worker_settings()
    if settings is not None:
        return list(settings["endpoints"])
    endpoints = list(options["endpoints"])
    if options["bind"] is not None or options["port"] is not None:
        port = options["port"] if options["port"] is not None else 8000
        endpoints.append(_tcp_endpoint(options["bind"] or "127.0.0.1", port))
    if options["unix-socket"]:
        path = options["unix-socket"].replace(":", "\\:")
        endpoints.append(f"unix:{path}")
    if options["fd"] is not None:
        endpoints.append(f"fd:fileno={options['fd']}")
    return endpoints or [DEFAULT_ENDPOINT]


def endpoint_problem(description: str, exc: BaseException | None = None) -> str | None:
    """What is wrong with an endpoint string, said in the user's terms: for the
    exception Twisted's parser raised (``exc``), or, without one, for a string it
    accepted that cannot work (``None``: nothing seen)."""
    from .listeners import split_description, split_proxy_prefix

    rest = split_proxy_prefix(description)[1]
    try:
        kind, args, kwargs = split_description(rest)
    except ValueError:
        return str(exc) if exc is not None else None
    if kind == "ssl" and "privateKey" not in kwargs and "certDir" not in kwargs:
        # Twisted's parser would look for "server.pem", a file the user never named.
        return "ssl: needs privateKey=KEY.pem (and certKey=CERT.pem for a separate certificate file) or certDir=DIR"
    if kind == "systemd" and "domain" not in kwargs:
        return "systemd: needs domain=INET, INET6 or UNIX (e.g. systemd:domain=INET:index=0)"
    if exc is not None:
        text = str(exc)
        number = re.search(r"invalid literal for int\(\) with base 10: '(.*)'", text)
        if number is None:
            return text
        named = [key for key, value in kwargs.items() if value == number.group(1)]
        if not named and args and args[0] == number.group(1):
            named = ["port"]
        what = named[0] if named else "a value"
        return f"{what} must be a whole number, not {number.group(1)!r}"
    if kind == "unix":
        path = args[0] if args else kwargs.get("address", "")
        directory = os.path.dirname(os.path.abspath(path)) if path else ""
        if directory and not os.path.isdir(directory):
            return f"the directory {directory} for the socket does not exist"
    return None


def build_service(options: Options, reactor: Any = None, twistd: bool = False) -> Any:
    """Everything ``makeService`` does for parsed ``options`` (whose settings and
    endpoint strings their parsing checked), raising ``SystemExit`` with a
    one-line message on an application that does not load or an access log
    that cannot be opened. ``twistd``: the service is for twistd's service
    parent (see :func:`~twisted_asgi.server.twistd_service_class`)."""
    from .server import AccessLog, ASGIService, twistd_service_class

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config = options.config  # checked when the options were parsed, as the endpoints were
    endpoints = endpoints_from_options(options)
    worker = _worker_settings() is not None
    if config.metrics_endpoint:
        try:
            import prometheus_client  # noqa: F401 (checked here, used at each scrape)
        except ImportError:
            raise SystemExit(
                "twistd asgi: --metrics-endpoint needs prometheus_client: pip install 'twisted-asgi[metrics]'"
            ) from None
    if (config.workers or config.reload) and not worker:
        # The workers load the app and check the listeners; this process only supervises.
        from .workers import Supervisor

        supervisor = Supervisor(getattr(options, "argv", []), config, endpoints, reactor)
        if config.reload:
            from .reload import MISSING, Reloader

            try:
                import watchfiles  # noqa: F401 (checked here, used by the reloader's thread)
            except ImportError:
                raise SystemExit(f"twistd asgi: {MISSING}") from None
            supervisor.count = 1
            directories = list(config.reload_dirs or (options["app-dir"],))
            supervisor.reloader = Reloader(supervisor, directories, config.reload_include, config.reload_exclude)
        return supervisor
    try:
        if options["django"]:
            from .django import load_project

            app = load_project(options["django"], options["application"], options["factory"], options["app-dir"])
        else:
            app = load_app(options["application"], options["factory"], options["app-dir"])
    except AppLoadError as exc:
        raise SystemExit(f"twistd asgi: {exc}") from None
    access_log = None
    if options["access-log"]:
        try:
            access_log = AccessLog.open(options["access-log"])
        except OSError as exc:
            raise SystemExit(f"twistd asgi: cannot open access log: {exc}") from None
    service_class = twistd_service_class() if twistd else ASGIService
    service = service_class(app, config, endpoints, reactor, access_log)
    if worker:
        from .workers import attach_worker

        attach_worker(service)
    return service


def makeService(options: Options) -> Any:
    """twistd's entry point: the service that serves the app."""
    install_reactor(options)
    service = build_service(options, twistd=True)
    parent = getattr(options, "parent", None)
    if parent is not None and not parent.get("nodaemon", True):
        # twistd detaches next and its parent exits 0 once the service object
        # exists: bind now, so a port in use fails the command, on its stderr.
        try:
            service.bind_now()
        except ListenError as exc:
            raise SystemExit(f"twistd asgi: {exc}") from None
    atexit.register(_exit_with_code, service)
    return service


def _exit_with_code(service: Any) -> None:
    """twistd always exits 0 once its reactor stopped; make fatal start-up
    errors (lifespan failure, unusable port) exit non-zero."""
    if service.exit_code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(service.exit_code)
