#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH (the metrics tests run a real Prometheus).
# Installs Debian's `prometheus` package (it ships promtool) when they are missing.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-prometheus: prometheus/promtool missing and no apt-get here;" \
       "install Prometheus (>= 2.40) so that prometheus and promtool are on PATH" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo -n"; else
    echo "ensure-prometheus: not root and no sudo: run 'apt-get install -y prometheus' as root" >&2
    exit 1
  fi
fi
echo "ensure-prometheus: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: no node exporter and friends; the tests only need the two binaries.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start its own service (where there is an init system): the tests use their
# own instance on a free port, so stop it rather than leave a second scraper around.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl stop prometheus || true
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
