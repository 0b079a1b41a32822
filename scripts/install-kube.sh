#!/usr/bin/env bash
# install-kube.sh — install a real Kubernetes control plane for Airlock's e2e
# tests (test/e2e/, test/helpers/kube.ts). Idempotent and cached: a second run
# only checks and prints.
#
# Usage:
#   scripts/install-kube.sh [--apt-only | --go-only]
#
# Prints one line per component: NAME VERSION PATH. Exits non-zero with a
# message on the first failure.
#
# What it installs
#   * etcd      Debian's `etcd-server` package (/usr/bin/etcd) via apt-get, only
#               when missing (root; `apt-get update` runs only then). The packaged
#               service is never started: a temporary /usr/sbin/policy-rc.d
#               (exit 101) is put in place if none exists. Tests run their own
#               etcd on free ports with a throwaway data dir.
#   * kube-apiserver, kube-controller-manager, kubectl (the benchmark's peer for
#               `kubectl apply --server-side`)
#               built from source with the machine's Go (GOTOOLCHAIN=local) from
#               the k8s.io/kubernetes module on the Go module proxy, into
#               ${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}/bin. A stamp file
#               bin/.NAME.version records the pinned version, so a rebuild only
#               happens when the pin changes or a binary is missing.
#
# How the build works
#   k8s.io/kubernetes cannot be `go install`ed directly: its go.mod requires the
#   staging modules (k8s.io/api, apimachinery, client-go, apiserver, ...) at
#   v0.0.0 and maps them with `replace ... => ./staging/src/...`, and replace
#   directives of a dependency are ignored. So a throwaway module requires
#   k8s.io/kubernetes@KUBE_VERSION and replaces every staging module listed in
#   kubernetes' own go.mod with its published v0.MINOR.PATCH twin, then builds
#   both commands in one `go build` (shared packages compile once). Version
#   information is stamped with -ldflags like kubernetes' hack/lib/version.sh.
#   A cold build takes several minutes on 2 cores (see test/e2e/README.md).
#
# Network: only the Debian mirrors and the Go module proxy are used; no
# prebuilt binaries are downloaded from anywhere.
set -euo pipefail

# ---------------------------------------------------------------- pins -------
# v1.36.x needs Go >= 1.26.0 (its go.mod says `go 1.26.0`); the machine has 1.26.x.
KUBE_VERSION=v1.36.3
KUBE_COMMIT=unknown # the module zip carries no git metadata
KUBE_CMDS=(kube-apiserver kube-controller-manager kubectl)

PEERS_DIR="${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}"
BIN_DIR="$PEERS_DIR/bin"

# ---------------------------------------------------------------- helpers ----
log() { printf '[install-kube] %s\n' "$*" >&2; }
die() { printf '[install-kube] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

print_tool() { # NAME VERSION PATH
  printf '%-24s %-16s %s\n' "$1" "${2:-?}" "$3"
}

version_of() {
  grep -oE 'v?[0-9]+\.[0-9]+(\.[0-9]+)?[^[:space:],]*' <<<"$1" | head -n1 || true
}

DO_APT=1
DO_GO=1
while (($#)); do
  case "$1" in
    --apt-only) DO_GO=0 ;;
    --go-only) DO_APT=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done
((DO_APT || DO_GO)) || die "--apt-only and --go-only are mutually exclusive"

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_CREATED=0
TMP_DIRS=()
cleanup() {
  if ((POLICY_RC_CREATED)); then rm -f "$POLICY_RC"; POLICY_RC_CREATED=0; fi
  ((${#TMP_DIRS[@]} == 0)) || rm -rf "${TMP_DIRS[@]}"
}
trap cleanup EXIT

# ---------------------------------------------------------------- etcd -------
pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

install_etcd() {
  if pkg_installed etcd-server; then
    log "apt: etcd-server already installed"
    return 0
  fi
  ((EUID == 0)) || die "apt: need root to install etcd-server"
  command -v apt-get >/dev/null || die "apt-get not found (Debian/Ubuntu only)"
  # Keep the maintainer scripts from starting the packaged etcd service.
  if [[ ! -e "$POLICY_RC" ]]; then
    printf '#!/bin/sh\n# temporary, created by airlock scripts/install-kube.sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    POLICY_RC_CREATED=1
  fi
  log "apt: installing etcd-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends etcd-server >&2 \
    || die "apt-get install --no-install-recommends etcd-server failed"
  if ((POLICY_RC_CREATED)); then rm -f "$POLICY_RC"; POLICY_RC_CREATED=0; fi
  pkg_installed etcd-server || die "apt: etcd-server still not installed after apt-get install"
}

report_etcd() {
  local path out v
  path=$(command -v etcd 2>/dev/null || true)
  [[ -n "$path" ]] || { [[ -x /usr/bin/etcd ]] && path=/usr/bin/etcd; }
  [[ -n "$path" ]] || die "etcd: binary not found after installing etcd-server"
  # Read all of it before taking the first line: `| head -n1` can kill etcd with SIGPIPE (exit 141 under pipefail).
  out=$("$path" --version 2>&1) || die "etcd: '$path --version' failed: $out"
  out=$(head -n1 <<<"$out")
  v=$(version_of "$out")
  [[ -n "$v" ]] || die "etcd: could not read a version from: $out"
  print_tool etcd "$v" "$path"
}

# ---------------------------------------------------------------- kube -------
stamp_ok() { # NAME VERSION
  [[ -x "$BIN_DIR/$1" && -f "$BIN_DIR/.$1.version" && "$(cat "$BIN_DIR/.$1.version")" == "$2" ]]
}

build_kube() {
  local need=0 c
  for c in "${KUBE_CMDS[@]}"; do stamp_ok "$c" "$KUBE_VERSION" || need=1; done
  if ((need == 0)); then
    log "go: ${KUBE_CMDS[*]} $KUBE_VERSION already built"
    return 0
  fi

  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || die "go not found on PATH (needed to build ${KUBE_CMDS[*]})"
  export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
  mkdir -p "$BIN_DIR"

  local started=$SECONDS
  log "go: building ${KUBE_CMDS[*]} $KUBE_VERSION from source (cold: several minutes)"

  # Kubernetes' own go.mod lists the staging modules it replaces with ./staging/src/...
  local info dir
  info=$(cd / && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION") \
    || die "go: 'go mod download k8s.io/kubernetes@$KUBE_VERSION' failed: $info"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -n1)
  [[ -n "$dir" && -f "$dir/go.mod" ]] || die "go: no module directory for k8s.io/kubernetes@$KUBE_VERSION in: $info"
  local go_version
  go_version=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$dir/go.mod" | head -n1)
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*$#\1#p' "$dir/go.mod")
  [[ -n "$staging" ]] || die "go: no './staging/src' replace lines in $dir/go.mod"

  # v1.MINOR.PATCH -> v0.MINOR.PATCH for the published staging modules
  local staging_version="v0.${KUBE_VERSION#v1.}"

  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/airlock-kube-build.XXXXXX")
  TMP_DIRS+=("$tmp")
  {
    printf 'module airlock-kube-build\n\ngo %s\n\n' "${go_version:-1.26.0}"
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
    local m
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
    printf ')\n'
  } >"$tmp/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >"$tmp/tools.go"

  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local build_date
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=$KUBE_COMMIT -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done

  mkdir -p "$tmp/bin"
  (
    cd "$tmp" &&
      go mod download >&2 &&
      # resolve the full graph (adds the go.sum lines and any indirect requirements)
      go mod tidy >&2 &&
      CGO_ENABLED=0 go build -trimpath -tags=providerless -ldflags="$ldflags" -o "$tmp/bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  ) >&2 || die "go: building ${KUBE_CMDS[*]} from k8s.io/kubernetes@$KUBE_VERSION failed (see above; work dir $tmp)"

  for c in "${KUBE_CMDS[@]}"; do
    [[ -x "$tmp/bin/$c" ]] || die "go: $c binary not produced"
    mv -f "$tmp/bin/$c" "$BIN_DIR/$c"
    printf '%s\n' "$KUBE_VERSION" >"$BIN_DIR/.$c.version"
  done
  rm -rf "$tmp"
  log "go: built ${KUBE_CMDS[*]} $KUBE_VERSION in $((SECONDS - started)) s"
}

report_kube() { # NAME
  local name=$1 path=$BIN_DIR/$1 out v
  local flag=(--version)
  [[ "$name" == kubectl ]] && flag=(version --client)
  out=$("$path" "${flag[@]}" 2>&1) || die "$name: '$path ${flag[*]}' failed: $out"
  v=$(version_of "$out")
  [[ -n "$v" ]] || die "$name: could not read a version from: $out"
  print_tool "$name" "$v" "$path"
}

# ---------------------------------------------------------------- main -------
if ((DO_APT)); then install_etcd; fi
if ((DO_GO)); then
  mkdir -p "$PEERS_DIR"
  # one build at a time per cache dir (install-peers.sh takes the same lock)
  if command -v flock >/dev/null; then
    exec 9>"$PEERS_DIR/.lock"
    flock 9 || die "cannot lock $PEERS_DIR/.lock"
  fi
  build_kube
fi

if ((DO_APT)); then report_etcd; fi
if ((DO_GO)); then
  for c in "${KUBE_CMDS[@]}"; do report_kube "$c"; done
fi
