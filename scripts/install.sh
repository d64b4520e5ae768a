#!/usr/bin/env bash
# Installs recgraph with everything its tests and benchmarks use, on a fresh machine.
# torch goes first and pinned: the CPU wheel of torch==2.13.0 lies on this machine, and
# anything that asked for plain "torch" first would pull a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[all]"
# Debian's Chromium for the page test (tests/serving/test_page.py, marker "browser"); never a
# browser download. Skipped, with a note, where apt is missing or not ours to use.
if [ -x /usr/bin/chromium ]; then
    :
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
        echo "note: could not install chromium with apt; the browser test will be skipped" >&2
    fi
else
    echo "note: no apt-get (or not root): chromium not installed; the browser test will be skipped" >&2
fi
# Debian's JDBC drivers, so that the Spark jobs can read the store over JDBC (tests marked
# spark + mysql/postgres); skipped with a note where apt is missing or not ours to use.
if [ -f /usr/share/java/postgresql.jar ] && [ -f /usr/share/java/mariadb-java-client.jar ]; then
    :
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpostgresql-jdbc-java libmariadb-java >/dev/null; }; then
        echo "note: could not install the JDBC drivers with apt; the Spark JDBC tests will be skipped" >&2
    fi
fi
python -c "import torch, recgraph; print(f'recgraph {recgraph.__version__} installed (torch {torch.__version__})')"
