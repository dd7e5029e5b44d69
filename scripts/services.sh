#!/usr/bin/env bash
# Install and start what the test suite needs: Debian packages it uses (an OpenSSH
# server for the SFTP and SSH tests, Chromium for the browser tests) and the local
# PostgreSQL.
set -euo pipefail

# Debian packages: binary that proves it is installed -> package.
declare -A PACKAGES=(
  [/usr/sbin/sshd]=openssh-server
  [/usr/lib/openssh/sftp-server]=openssh-sftp-server
  [/usr/bin/chromium]=chromium
)
missing=()
for binary in "${!PACKAGES[@]}"; do
  [ -x "$binary" ] || missing+=("${PACKAGES[$binary]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages the tests need: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" ||
    { "${sudo_cmd[@]}" apt-get update -q && "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"; }
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "No PostgreSQL cluster is installed (apt-get install postgresql)." >&2
    exit 1
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
