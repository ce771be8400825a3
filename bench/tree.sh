#!/usr/bin/env bash
# Builds (once) the benchmark app: 15 pure-Python packages installed with `pip install --target`
# (~80 MB, ~6,500 files). Prints its path. Needs python3 -m pip and PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=bench/work/tree
pkgs="django==5.1.4 pygments==2.18.0 babel==2.16.0 docutils==0.21.2 jinja2==3.1.4 werkzeug==3.1.3 flask==3.1.0 requests==2.32.3 urllib3==2.2.3 sqlparse==0.5.3 markdown==3.7 pip==24.3.1 setuptools==75.6.0 idna==3.10 certifi==2024.8.30"
if [ ! -f "$tree/.installed" ]; then
  rm -rf "$tree" && mkdir -p "$tree"
  echo "installing the benchmark tree from PyPI (once)..." >&2
  python3 -m pip install --quiet --no-compile --no-deps --target "$tree/lib/python" $pkgs >&2
  printf '[production]\napp_name = benchapp\nrunner = app.py\n' > "$tree/app.ini"
  printf 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n' > "$tree/app.py"
  touch "$tree/.installed"
fi
echo "$tree"
