#!/bin/sh
# Build the two virtualenvs the benchmark suite runs servers from (both gitignored):
#   benchmarks/.venv-peers  daphne, uvicorn[standard] and zttp (uvicorn --http zttp), hypercorn, granian
#                           (pinned: requirements-peers.txt)
#   benchmarks/.venv-self   this checkout, installed with `pip install .` (not editable)
#
#   benchmarks/setup.sh        both
#   benchmarks/setup.sh self   only reinstall this checkout into .venv-self (after changing the server)
#
# run.py --baseline REF builds a third one per commit, benchmarks/.venv-ref-<commit>, itself.
#
# wrk and h2load come from Debian: apt-get install -y wrk nghttp2-client
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-python3}
what=${1:-all}

if [ "$what" = all ]; then
    "$python" -m venv "$here/.venv-peers"
    "$here/.venv-peers/bin/python" -m pip install --quiet --upgrade pip
    "$here/.venv-peers/bin/python" -m pip install --quiet -r "$here/requirements-peers.txt"
fi
if [ "$what" = all ] || [ ! -x "$here/.venv-self/bin/python" ]; then
    "$python" -m venv "$here/.venv-self"
    "$here/.venv-self/bin/python" -m pip install --quiet --upgrade pip
    "$here/.venv-self/bin/python" -m pip install --quiet -r "$here/requirements-self.txt"
fi
# The version number does not change between commits, the code does: always reinstall.
"$here/.venv-self/bin/python" -m pip install --quiet --force-reinstall --no-deps "$root"
"$here/.venv-self/bin/python" -m pip install --quiet "$root"
# The commit .venv-self now holds, for the results file (run.py reports it next to the
# versions): a baseline comparison (run.py --baseline REF) is only as good as this install.
if commit=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
    dirty=$(git -C "$root" status --porcelain --untracked-files=no -- twisted_asgi twisted_plugins setup.cfg pyproject.toml | head -n 1)
    echo "$commit${dirty:+ with uncommitted changes}" >"$here/.venv-self/installed-from"
fi

for tool in wrk h2load taskset openssl; do
    command -v "$tool" >/dev/null || echo "setup.sh: $tool not found (apt-get install -y wrk nghttp2-client util-linux openssl)" >&2
done
echo "setup.sh: ready; run: python benchmarks/run.py"
