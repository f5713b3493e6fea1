# Shared by demo.sh and test.sh: find Python 3.11 and make the virtual environment.
# shellcheck shell=bash

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Tether needs Python 3.11 (set PYTHON=/path/to/python3.11)." >&2
  return 1
}

# pip's own notes about the machine's package sources are noise here; real errors still show.
quiet_pip() {
  .venv/bin/python -m pip --quiet --disable-pip-version-check "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
  fi
  quiet_pip install --upgrade pip
  # The project runs from this checkout; installing "." brings its dependencies.
  quiet_pip install ".${extras}"
}
