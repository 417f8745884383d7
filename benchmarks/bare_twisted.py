"""A floor, not a server: a bare Twisted protocol on the asyncio reactor (over uvloop
when it is installed, as twisted-asgi's default is) that answers every request head
with the same fixed bytes, without parsing anything.

It shows, in the same run, how much of twisted-asgi's CPU per request is the reactor's own
per-event cost (read, write, loop iteration) rather than ours.  Only for the HTTP/1.1
keep-alive scenarios: it never closes a connection and ignores request bodies.

    python bare_twisted.py PORT
"""

from __future__ import annotations

import sys

from twisted.internet import asyncioreactor

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
END_OF_HEAD = b"\r\n\r\n"


def main(port: int) -> None:
    """Listen on 127.0.0.1:``port`` with Twisted's defaults until SIGTERM."""
    try:
        import uvloop
    except ImportError:
        asyncioreactor.install()
    else:
        asyncioreactor.install(uvloop.new_event_loop())
    from twisted.internet import endpoints, protocol, reactor

    class Bare(protocol.Protocol):
        """One fixed response per request head seen (pipelined heads get one each)."""

        pending = b""

        def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
            data = self.pending + data
            heads = data.count(END_OF_HEAD)
            if heads:
                self.pending = data[data.rfind(END_OF_HEAD) + len(END_OF_HEAD) :]
                self.transport.write(RESPONSE * heads)
            else:
                self.pending = data[-65536:]

    factory = protocol.Factory.forProtocol(Bare)
    endpoints.serverFromString(reactor, f"tcp:port={port}:interface=127.0.0.1").listen(factory)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
