#!/usr/bin/env bash
# Fetch the web UI's front-end libraries from the npm registry into
# src/runwright/web/static/vendor/ (never committed). Idempotent: a library whose files
# are all present is skipped, so `make install` may call it every time.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="${RUNWRIGHT_VENDOR_DIR:-$HERE/src/runwright/web/static/vendor}"

# package@version, then "source-in-package:destination-in-vendor" pairs.
LIBRARIES=(
  "htmx.org@2.0.11 dist/htmx.min.js:htmx.min.js"
  "htmx-ext-sse@2.2.4 dist/sse.min.js:htmx-ext-sse.min.js"
  "chart.js@4.6.1 dist/chart.umd.min.js:chart.umd.min.js"
  "codemirror@5.65.21 lib/codemirror.js:codemirror/codemirror.js lib/codemirror.css:codemirror/codemirror.css mode/python/python.js:codemirror/mode/python.js mode/yaml/yaml.js:codemirror/mode/yaml.js mode/toml/toml.js:codemirror/mode/toml.js mode/properties/properties.js:codemirror/mode/properties.js mode/javascript/javascript.js:codemirror/mode/javascript.js mode/shell/shell.js:codemirror/mode/shell.js mode/sql/sql.js:codemirror/mode/sql.js"
)

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_assets: npm is not installed; install Node.js (apt-get install -y npm) and run" \
       "scripts/fetch_assets.sh again. The UI works without these files, with less comfort." >&2
  exit 1
fi

mkdir -p "$VENDOR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

for entry in "${LIBRARIES[@]}"; do
  read -r spec files <<<"$entry"
  missing=0
  for pair in $files; do
    [[ -s "$VENDOR/${pair#*:}" ]] || missing=1
  done
  if [[ $missing == 0 ]]; then
    echo "fetch_assets: $spec already present"
    continue
  fi
  rm -rf "$WORK/pkg" && mkdir -p "$WORK/pkg"
  tarball="$(cd "$WORK" && npm pack --silent "$spec" 2>/dev/null | tail -n 1)"
  tar -xzf "$WORK/$tarball" -C "$WORK/pkg"
  for pair in $files; do
    source="$WORK/pkg/package/${pair%%:*}"
    destination="$VENDOR/${pair#*:}"
    if [[ ! -f "$source" ]]; then
      echo "fetch_assets: $spec has no ${pair%%:*}; the pinned version changed its layout" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$destination")"
    cp "$source" "$destination"
  done
  echo "fetch_assets: $spec fetched"
done
