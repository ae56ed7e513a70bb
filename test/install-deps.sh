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

# go_server NAME MODULE VERSION [PACKAGE] builds a server from the Go module
# proxy into the test cache (os.UserCacheDir()/meshd/bin/NAME-VERSION, where
# test/infra looks for it) when it is not there. The proxy refuses some
# `go install M@V` (see TEST-SERVERS.md); then the module is downloaded and
# built in place.
go_server() {
	local name=$1 module=$2 version=$3 pkg=${4:-$2}
	local cache
	case "$(uname -s)" in
	Darwin) cache="$HOME/Library/Caches" ;;
	*) cache="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
	esac
	local bin="$cache/meshd/bin/$name-$version"
	[ -x "$bin" ] && return 0
	mkdir -p "$cache/meshd/bin"
	local tmp
	tmp="$(mktemp -d)"
	echo "install-deps: building $name $version from the Go module proxy (once; a few CPU-minutes)"
	if ! (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 go install "$pkg@$version"); then
		local dir
		dir="$(cd "$tmp" && go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
		[ -n "$dir" ] || { echo "install-deps: cannot download $module@$version" >&2; rm -rf "$tmp"; exit 1; }
		local rel="${pkg#"$module"}"
		(cd "$dir" && CGO_ENABLED=0 go build -o "$tmp/$(basename "$pkg")" "./${rel#/}")
	fi
	mv "$tmp/$(basename "$pkg")" "$bin"
	rm -rf "$tmp"
}

# node_ui installs the browser driver of the dashboard test (test/ui:
# playwright-core from the npm registry, pinned by its lockfile) into the
# test cache, where dashboard_test.go looks for it, when it is not there.
node_ui() {
	local cache
	case "$(uname -s)" in
	Darwin) cache="$HOME/Library/Caches" ;;
	*) cache="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
	esac
	local dir="$cache/meshd/node/ui-$(sha256sum test/ui/package-lock.json | cut -c1-12)"
	[ -f "$dir/node_modules/playwright-core/package.json" ] && return 0
	command -v npm >/dev/null 2>&1 || apt_install nodejs npm
	echo "install-deps: installing playwright-core for the dashboard test into $dir"
	mkdir -p "$dir"
	cp test/ui/package.json test/ui/package-lock.json "$dir/"
	(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
}

need_go
# Debian packages the tests start as real servers (test/infra launchers).
apt_install mosquitto postgresql mariadb-server mariadb-client clickhouse-server clickhouse-client
# Headless Chromium for the cross-origin test of the app API (test/e2e security_test.go)
# and, with its driver, the dashboard's browser test (test/ui).
apt_install chromium
# Servers built from the Go module proxy: SMTP for email-sink, S3 for
# s3-source/s3-sink (each a few CPU-minutes, once).
go_server mailpit github.com/axllent/mailpit v1.33.1
go_server versitygw github.com/versity/versitygw v1.8.0 github.com/versity/versitygw/cmd/versitygw
node_ui
go mod download

echo "install-deps: ok"
