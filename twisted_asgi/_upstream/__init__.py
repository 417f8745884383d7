"""The fence: every private name of a dependency that twisted-asgi touches
outside the connection shells lives in this package, one module per
dependency (:mod:`.twisted`, :mod:`.h2`, :mod:`.hpack`), each access commented with the
upstream file and the versions it was read from.

Each fast path built on a private name has a public fallback. A module here
checks, once, whether the private names it needs are present and behave as
read; where not, the public path is used and :func:`report` says so in one log
line at start-up (:mod:`.fastpaths`). ``tests/test_upstream_fence.py`` fails on a private access
outside this package (the shells' files are on its shrinking allow-list),
``tests/test_upstream_drift.py`` on an upstream source that changed under a
copy or an override, and ``tests/test_upstream_fallback.py`` serves over
loopback with each private name gone. docs/upstream.rst lists them all.

Importing this package changes nothing in any dependency.
"""
