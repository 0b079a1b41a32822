#!/usr/bin/env bash
# install-peers.sh — install the real third-party tools that Airlock's interop
# tests and benchmarks drive. Idempotent: a second run only checks and prints.
#
# Usage:
#   scripts/install-peers.sh [--apt-only | --go-only] [TOOL ...]
#
#   TOOL (default: all)
#     apt: docker-registry skopeo podman buildah containerd (alias: ctr) umoci wrk jq curl
#     go:  crane oras regctl conformance minio cosign cosign-v3
#
# Prints one line per selected tool: NAME VERSION PATH. Exits non-zero with a
# message on the first failure.
#
# Where things go
#   * Debian packages via apt-get (must run as root; `apt-get update` runs once,
#     only when a package is missing). Services are never started: a temporary
#     /usr/sbin/policy-rc.d (exit 101) is put in place if none exists.
#   * Go tools are built with the machine's Go (GOTOOLCHAIN=local) from the Go
#     module proxy into ${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}/bin; a stamp
#     file bin/.NAME.version records the pinned version, so a rebuild only
#     happens when the pin changes or the binary is missing.
#     `eval "$(scripts/peers.sh)"` puts that directory on PATH.
#
# docker-registry (CNCF distribution 2.8, Debian package) is /usr/bin/docker-registry;
# start your own instance with `docker-registry serve CONFIG.yml` (sample config:
# /etc/docker/registry/config.yml).
#
# OCI distribution-spec conformance suite
#   The module github.com/opencontainers/distribution-spec/conformance has no
#   tags of its own, and the module proxy reachable here refuses (403) the
#   pseudo-version of the v1.1.1 release commit and of later main commits. The
#   version pinned below is one it does serve (main, 2023-11-01: the v1.1 suite
#   with referrers, cross-mount, OCI_REPORT_DIR..., 79 specs). The sum database has no entry
#   for it, so checksum-DB lookup is skipped for this one module
#   (GONOSUMDB) and the zip is instead checked against the h1: hash pinned
#   below. It is built with `go test -c` into bin/conformance.test.
#
#   Environment read by conformance.test (see scripts/conformance-env.md):
#     OCI_ROOT_URL                      registry base URL, e.g. http://127.0.0.1:5000 (required;
#                                       the binary panics at start-up without it)
#     OCI_NAMESPACE                     repository used by the tests, e.g. myorg/myrepo
#     OCI_CROSSMOUNT_NAMESPACE          second repository for cross-repo mount tests
#                                       (default: conformance-<random uuid>)
#     OCI_USERNAME / OCI_PASSWORD       basic-auth credentials (optional)
#     OCI_AUTH_SCOPE                    token scope to request (optional)
#     OCI_TEST_PULL                     enable Pull workflow      (strconv.ParseBool: 1/true)
#     OCI_TEST_PUSH                     enable Push workflow
#     OCI_TEST_CONTENT_DISCOVERY        enable Content Discovery (tags list, referrers)
#     OCI_TEST_CONTENT_MANAGEMENT       enable Content Management (deletes)
#     OCI_DEBUG                         log every HTTP request/response (ParseBool)
#     OCI_REPORT_DIR                    where junit.xml + report.html go (default: cwd;
#                                       "none" = write neither)
#     OCI_HIDE_SKIPPED_WORKFLOWS        "1" hides disabled workflows in report.html
#     OCI_DELETE_MANIFEST_BEFORE_BLOBS  teardown order (ParseBool; default true when unset)
#     OCI_AUTOMATIC_CROSSMOUNT          unset: skip the test; 1: expect mount without
#                                       `from=` to succeed (201); 0: expect it to be refused
#     OCI_SKIP_EMPTY_LAYER_PUSH_TEST    only echoed in report.html in this version (the
#                                       no-layer manifest push just warns if refused)
#     OCI_MANIFEST_DIGEST + OCI_TAG_NAME + OCI_BLOB_DIGEST
#                                       all three set: Pull uses this existing content
#                                       instead of pushing its own
#     OCI_TAG_LIST                      comma list: Discovery uses these tags instead of
#                                       pushing its own
#   Ginkgo flags work too, e.g. -ginkgo.v, -ginkgo.focus=REGEX, -ginkgo.dry-run.
#
# Network: only the Debian mirrors and the Go module proxy are used; no
# prebuilt binaries are downloaded from anywhere.
set -euo pipefail

# ---------------------------------------------------------------- pins -------
CRANE_MOD=github.com/google/go-containerregistry
CRANE_PKG=github.com/google/go-containerregistry/cmd/crane
CRANE_VERSION=v0.22.1

ORAS_MOD=oras.land/oras
ORAS_PKG=oras.land/oras/cmd/oras
# v1.3.0 is on the proxy but missing from the sum database here; v1.2.3 is not.
ORAS_VERSION=v1.2.3
ORAS_LDFLAGS="-X oras.land/oras/internal/version.BuildMetadata= -X oras.land/oras/internal/version.GitTreeState=clean"

REGCTL_MOD=github.com/regclient/regclient
REGCTL_PKG=github.com/regclient/regclient/cmd/regctl
REGCTL_VERSION=v0.11.7

CONFORMANCE_MOD=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20231101194043-f2182352d4cc
CONFORMANCE_SUM="h1:jL+CgYEEZluGb08ZcLpEyhn389kNMlwrWOHaIqXazq0="
CONFORMANCE_GOMOD_SUM="h1:odnkI+gfnNSdq8NaG/nKvENDEWkXAjjbgp8GKMllVSI="

# MinIO, the S3-compatible server the s3:// source is tested against (a long build: ~10 min cold).
MINIO_MOD=github.com/minio/minio
MINIO_PKG=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

# cosign, the signing peer: the last v2 release (old `.sig` tag storage by default) as bin/cosign and
# the current v3 (sigstore bundles attached as OCI 1.1 referrers by default) as bin/cosign-v3. The proxy
# here lists no v3.0.x release, so v3 is pinned to the newest v3.1.x. Each is a long build on two cores
# (several minutes cold), run with -p 2 to keep memory bounded.
COSIGN_V2_MOD=github.com/sigstore/cosign/v2
COSIGN_V2_PKG=github.com/sigstore/cosign/v2/cmd/cosign
COSIGN_V2_VERSION=v2.6.5
COSIGN_V3_MOD=github.com/sigstore/cosign/v3
COSIGN_V3_PKG=github.com/sigstore/cosign/v3/cmd/cosign
COSIGN_V3_VERSION=v3.1.3
cosign_ldflags() { printf -- '-X sigs.k8s.io/release-utils/version.gitVersion=%s' "$1"; }

APT_TOOLS=(docker-registry skopeo podman buildah containerd umoci wrk jq curl)
GO_TOOLS=(crane oras regctl conformance minio cosign cosign-v3)

PEERS_DIR="${AIRLOCK_PEERS:-$HOME/.cache/airlock-peers}"
BIN_DIR="$PEERS_DIR/bin"

# ---------------------------------------------------------------- helpers ----
log() { printf '[install-peers] %s\n' "$*" >&2; }
die() { printf '[install-peers] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

in_list() { # in_list WORD LIST...
  local w=$1; shift
  local x
  for x in "$@"; do [[ "$x" == "$w" ]] && return 0; done
  return 1
}

# first version-looking token of a string
version_of() {
  grep -oE 'v?[0-9]+\.[0-9]+(\.[0-9]+)?[^[:space:],]*' <<<"$1" | head -n1 || true
}

print_tool() { # NAME VERSION PATH
  printf '%-16s %-40s %s\n' "$1" "${2:-?}" "$3"
}

# ---------------------------------------------------------------- args -------
DO_APT=1
DO_GO=1
SELECTED=()
while (($#)); do
  case "$1" in
    --apt-only) DO_GO=0 ;;
    --go-only) DO_APT=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option: $1 (try --help)" ;;
    ctr) SELECTED+=(containerd) ;;
    *)
      in_list "$1" "${APT_TOOLS[@]}" "${GO_TOOLS[@]}" \
        || die "unknown tool: $1 (known: ${APT_TOOLS[*]} ${GO_TOOLS[*]})"
      SELECTED+=("$1")
      ;;
  esac
  shift
done
((DO_APT || DO_GO)) || die "--apt-only and --go-only are mutually exclusive"

want_apt=()
want_go=()
if ((${#SELECTED[@]} == 0)); then
  ((DO_APT)) && want_apt=("${APT_TOOLS[@]}")
  ((DO_GO)) && want_go=("${GO_TOOLS[@]}")
else
  for t in "${SELECTED[@]}"; do
    if in_list "$t" "${APT_TOOLS[@]}"; then
      ((DO_APT)) || die "$t is a Debian package, but --go-only was given"
      in_list "$t" ${want_apt[@]+"${want_apt[@]}"} || want_apt+=("$t")
    else
      ((DO_GO)) || die "$t is a Go tool, but --apt-only was given"
      in_list "$t" ${want_go[@]+"${want_go[@]}"} || want_go+=("$t")
    fi
  done
fi

# ---------------------------------------------------------------- apt --------
pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_CREATED=0
cleanup_policy_rc() {
  if ((POLICY_RC_CREATED)); then rm -f "$POLICY_RC"; POLICY_RC_CREATED=0; fi
}
TMP_DIRS=()
cleanup() {
  cleanup_policy_rc
  ((${#TMP_DIRS[@]} == 0)) || rm -rf "${TMP_DIRS[@]}"
}
trap cleanup EXIT

install_apt() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then
    log "apt: all ${#} selected packages already installed"
    return 0
  fi
  ((EUID == 0)) || die "apt: need root to install: ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found (Debian/Ubuntu only)"

  # Keep maintainer scripts from starting services (registry, containerd).
  if [[ ! -e "$POLICY_RC" ]]; then
    printf '#!/bin/sh\n# temporary, created by airlock scripts/install-peers.sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    POLICY_RC_CREATED=1
  fi

  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install --no-install-recommends ${missing[*]} failed"
  cleanup_policy_rc
  for p in "${missing[@]}"; do
    pkg_installed "$p" || die "apt: $p still not installed after apt-get install"
  done
}

report_apt() { # PKG
  local pkg=$1 bin out path
  case "$pkg" in
    containerd) bin=ctr ;;
    *) bin=$pkg ;;
  esac
  path=$(command -v "$bin" 2>/dev/null) || die "$pkg: binary '$bin' not on PATH"
  case "$bin" in
    wrk) out=$("$path" -v 2>&1 || true) ;;        # wrk -v prints usage, exits 1
    docker-registry|ctr|umoci|skopeo|podman|buildah)
      out=$("$path" --version 2>&1) || die "$pkg: '$path --version' failed: $out" ;;
    *) out=$("$path" --version 2>&1) || die "$pkg: '$path --version' failed"; out=$(head -n1 <<<"$out") ;;
  esac
  local v
  v=$(version_of "$out")
  [[ -n "$v" ]] || die "$pkg: could not read a version from: $out"
  print_tool "$pkg" "$v" "$path"
}

# ---------------------------------------------------------------- go ---------
go_env_common() {
  export GOTOOLCHAIN=local GOWORK=off GOFLAGS=
}

stamp_ok() { # NAME VERSION
  [[ -x "$BIN_DIR/$1" && -f "$BIN_DIR/.$1.version" && "$(cat "$BIN_DIR/.$1.version")" == "$2" ]]
}

write_stamp() { printf '%s\n' "$2" >"$BIN_DIR/.$1.version"; }

# go_tool NAME MODULE PKG VERSION LDFLAGS [BUILT]
# BUILT is the binary name `go install` produces when it differs from NAME (default NAME).
# `go install PKG@VERSION` keeps the tool's own version stamping. If the proxy
# refuses the module's version list (needed for the deprecation check `go install`
# does — this happens for oras.land/oras here), build from a throwaway module
# that requires MODULE@VERSION instead.
go_tool() {
  local name=$1 mod=$2 pkg=$3 ver=$4 ldflags=$5 built=${6:-$1}
  if stamp_ok "$name" "$ver"; then
    log "go: $name $ver already built"
    return 0
  fi
  log "go: building $name $ver (this can take a minute or two)"
  local tmp out
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/airlock-peers-$name.XXXXXX")
  TMP_DIRS+=("$tmp")
  mkdir -p "$tmp/bin"
  if out=$(cd "$tmp" && GOBIN="$tmp/bin" go install -p "${GO_BUILD_P:-2}" -ldflags="$ldflags" "$pkg@$ver" 2>&1); then
    :
  elif grep -qE 'loading deprecation|/@v/list' <<<"$out"; then
    log "go: 'go install $pkg@$ver' cannot list versions on this proxy; building via a temporary module"
    # (errexit is off inside a `( ... ) || die` list, hence the && chain)
    (
      cd "$tmp" &&
        export GOFLAGS=-mod=mod &&
        go mod init airlock-peers-build >/dev/null 2>&1 &&
        printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go &&
        go get "$mod@$ver" &&
        GOBIN="$tmp/bin" go install -p "${GO_BUILD_P:-2}" -ldflags="$ldflags" "$pkg"
    ) >&2 || die "go: building $name from $mod@$ver failed (see above)"
  else
    printf '%s\n' "$out" >&2
    die "go: 'go install $pkg@$ver' failed"
  fi
  [[ -x "$tmp/bin/$built" ]] || die "go: $name binary not produced"
  mv -f "$tmp/bin/$built" "$BIN_DIR/$name"
  write_stamp "$name" "$ver"
  rm -rf "$tmp"
}

build_conformance() {
  local name=conformance.test ver=$CONFORMANCE_VERSION
  if stamp_ok "$name" "$ver"; then
    log "go: conformance $ver already built"
    return 0
  fi
  log "go: building conformance suite $ver (go test -c)"
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/airlock-peers-conformance.XXXXXX")
  TMP_DIRS+=("$tmp")
  (
    cd "$tmp" &&
      export GOFLAGS=-mod=mod &&
      # not in sum.golang.org: skip the checksum DB for this module only; go.sum pins it.
      export GONOSUMDB="$CONFORMANCE_MOD${GONOSUMDB:+,$GONOSUMDB}" &&
      go mod init airlock-conformance-build >/dev/null 2>&1 &&
      printf '%s %s %s\n%s %s/go.mod %s\n' \
        "$CONFORMANCE_MOD" "$ver" "$CONFORMANCE_SUM" \
        "$CONFORMANCE_MOD" "$ver" "$CONFORMANCE_GOMOD_SUM" >go.sum &&
      go get "$CONFORMANCE_MOD@$ver" &&
      go test -c -o "$tmp/$name" \
        -ldflags="-X $CONFORMANCE_MOD.Version=$ver" "$CONFORMANCE_MOD"
  ) >&2 \
    || die "go: building the conformance suite ($CONFORMANCE_MOD@$ver) failed (see above)"
  [[ -x "$tmp/$name" ]] || die "go: conformance.test not produced"
  mv -f "$tmp/$name" "$BIN_DIR/$name"
  write_stamp "$name" "$ver"
  rm -rf "$tmp"
}

report_go() { # NAME
  local name=$1 path out v
  case "$name" in
    crane)
      path=$BIN_DIR/crane
      out=$("$path" version 2>&1) || die "crane: '$path version' failed: $out" ;;
    oras)
      path=$BIN_DIR/oras
      out=$("$path" version 2>&1) || die "oras: '$path version' failed: $out" ;;
    regctl)
      path=$BIN_DIR/regctl
      out=$("$path" version 2>&1 | grep -i vcstag) || die "regctl: '$path version' failed" ;;
    cosign|cosign-v3)
      path=$BIN_DIR/$name
      out=$("$path" version 2>&1 | grep -i '^GitVersion') || die "$name: '$path version' failed" ;;
    minio)
      path=$BIN_DIR/minio
      "$path" --version >/dev/null 2>&1 || die "minio: '$path --version' failed"
      out=$(cat "$BIN_DIR/.minio.version") ;;
    conformance)
      path=$BIN_DIR/conformance.test
      # init() panics without OCI_ROOT_URL; listing tests needs no registry.
      out=$(OCI_ROOT_URL=http://127.0.0.1:1 OCI_NAMESPACE=airlock/check OCI_REPORT_DIR=none \
            "$path" -test.list . 2>&1) || die "conformance: '$path -test.list .' failed: $out"
      grep -qx TestConformance <<<"$out" || die "conformance: unexpected test list: $out"
      out=$(cat "$BIN_DIR/.conformance.test.version") ;;
  esac
  v=$(version_of "$out")
  [[ -n "$v" ]] || die "$name: could not read a version from: $out"
  print_tool "$name" "$v" "$path"
}

install_go() {
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || die "go not found on PATH (needed to build ${*})"
  go_env_common
  mkdir -p "$BIN_DIR"
  # one run at a time per cache dir
  if command -v flock >/dev/null; then
    exec 9>"$PEERS_DIR/.lock"
    flock 9 || die "cannot lock $PEERS_DIR/.lock"
  fi
  local t
  for t in "$@"; do
    case "$t" in
      crane) go_tool crane "$CRANE_MOD" "$CRANE_PKG" "$CRANE_VERSION" "" ;;
      oras) go_tool oras "$ORAS_MOD" "$ORAS_PKG" "$ORAS_VERSION" "$ORAS_LDFLAGS" ;;
      regctl) go_tool regctl "$REGCTL_MOD" "$REGCTL_PKG" "$REGCTL_VERSION" "" ;;
      minio) go_tool minio "$MINIO_MOD" "$MINIO_PKG" "$MINIO_VERSION" "" ;;
      cosign)
        go_tool cosign "$COSIGN_V2_MOD" "$COSIGN_V2_PKG" "$COSIGN_V2_VERSION" \
          "$(cosign_ldflags "$COSIGN_V2_VERSION")" ;;
      cosign-v3)
        go_tool cosign-v3 "$COSIGN_V3_MOD" "$COSIGN_V3_PKG" "$COSIGN_V3_VERSION" \
          "$(cosign_ldflags "$COSIGN_V3_VERSION")" cosign ;;
      conformance) build_conformance ;;
    esac
  done
}

# ---------------------------------------------------------------- main -------
if ((${#want_apt[@]})); then
  install_apt "${want_apt[@]}"
fi
if ((${#want_go[@]})); then
  install_go "${want_go[@]}"
fi

for t in ${want_apt[@]+"${want_apt[@]}"}; do report_apt "$t"; done
for t in ${want_go[@]+"${want_go[@]}"}; do report_go "$t"; done

if in_list docker-registry ${want_apt[@]+"${want_apt[@]}"}; then
  if (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
    log "note: something is listening on 127.0.0.1:5000 (a packaged registry service?)"
  fi
fi
