#!/usr/bin/env bash
# Installs, only when missing, the Debian packages the tests and the local run need:
# PostgreSQL, Redis (with Sentinel), Prometheus, openssl (test PKIs), iproute2 (test hosts in
# network namespaces), wrk for the benchmarks, and for the chart tests Lua (the Argo CD health
# check), curl, unzip and Python's venv (scripts/fetch-tools.sh). Go, for the real kube-apiserver, is a
# prerequisite like Rust (scripts/build-kube-apiserver.sh says so when it is missing).
# Needs root (or sudo) only when something is missing. Installs nothing from anywhere else.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v lua5.4 >/dev/null 2>&1 || missing+=(lua5.4)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: everything is installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
# The packages' own services are not wanted: tests and the local run start their own on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  echo exit 101 | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
