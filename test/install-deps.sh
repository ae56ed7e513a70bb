#!/usr/bin/env bash
# Installs what meshd's tests need, when it is missing. Run by `make test`;
# safe to run again. Servers that come from our own go.mod (NATS) are built
# by the tests themselves (test/infra) and need nothing here.
set -euo pipefail
cd "$(dirname "$0")/.."

need_go() {
	if ! command -v go >/dev/null 2>&1; then
		echo "install-deps: Go is not on PATH; install Go 1.26 or newer (https://go.dev/dl/)" >&2
		exit 1
	fi
}

# apt_install PKG... installs the Debian packages that are not installed yet.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "install-deps: installing ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_go
# Debian packages the tests start as real servers (test/infra launchers).
apt_install mosquitto postgresql mariadb-server mariadb-client clickhouse-server clickhouse-client
go mod download

# versitygw (S3, for connectors/s3): built from the Go module proxy into the
# user cache dir, where test/infra/versitygw.go looks for it (~3 CPU-minutes once).
vgw_dir="${XDG_CACHE_HOME:-$HOME/.cache}/meshd/bin"
[ "$(uname -s)" = Darwin ] && vgw_dir="$HOME/Library/Caches/meshd/bin"
if [ ! -x "$vgw_dir/versitygw-v1.8.0" ]; then
	echo "install-deps: building versitygw v1.8.0 into $vgw_dir"
	tmp="$(mktemp -d)"
	(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)
	mkdir -p "$vgw_dir" && mv "$tmp/versitygw" "$vgw_dir/versitygw-v1.8.0" && rm -rf "$tmp"
fi
echo "install-deps: ok"
