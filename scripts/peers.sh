#!/usr/bin/env bash
# peers.sh — put the Go-built peer tools (crane, oras, regctl, conformance.test)
# from scripts/install-peers.sh on PATH.
#
#   eval "$(scripts/peers.sh)"     # prints: export PATH='<cache>/bin:...'
#   source scripts/peers.sh        # same, applied to the current shell
#
# The cache is ${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}; also exports
# AIRLOCK_PEERS_BIN. Does nothing to PATH if the directory is already on it.

_airlock_peers_bin="${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}/bin"
case ":$PATH:" in
  *":$_airlock_peers_bin:"*) _airlock_peers_path="$PATH" ;;
  *) _airlock_peers_path="$_airlock_peers_bin${PATH:+:$PATH}" ;;
esac

if [ "${BASH_SOURCE[0]:-$0}" != "$0" ]; then
  # sourced
  export PATH="$_airlock_peers_path" AIRLOCK_PEERS_BIN="$_airlock_peers_bin"
  if [ ! -d "$_airlock_peers_bin" ]; then
    echo "peers.sh: $_airlock_peers_bin does not exist; run scripts/install-peers.sh" >&2
  fi
  unset _airlock_peers_bin _airlock_peers_path
else
  set -euo pipefail
  if [ ! -d "$_airlock_peers_bin" ]; then
    echo "peers.sh: $_airlock_peers_bin does not exist; run scripts/install-peers.sh" >&2
  fi
  printf 'export PATH=%q\n' "$_airlock_peers_path"
  printf 'export AIRLOCK_PEERS_BIN=%q\n' "$_airlock_peers_bin"
fi
