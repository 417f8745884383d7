"""Settings for the whole test session."""

from __future__ import annotations

import signal

# A shell without job control starts a background job with SIGINT ignored, and
# an ignored signal stays ignored across exec: servers started by the tests
# would then never see the SIGINT (Ctrl-C) the shutdown tests send them. A
# handler, unlike SIG_IGN, is reset to the default in the child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
