#!/usr/bin/env bash
# Installs, from Debian's packages, what a make target needs and is missing.
# Usage: deps.sh test|generate
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
want() { have "$1" || need+=("$2"); }

case "${1:-test}" in
test)
	want ip iproute2
	want ethtool ethtool
	want nft nftables
	want curl curl
	want python3 python3
	want keepalived keepalived # tests/sync_test.go runs the documented VRRP setup
	want gcc gcc # go test -race needs cgo
	;;
generate)
	want clang clang
	want llvm-strip llvm
	[[ -f /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
	[[ -f /usr/include/linux/bpf.h ]] || need+=(linux-libc-dev)
	;;
*)
	echo "usage: $0 test|generate" >&2
	exit 2
	;;
esac

if ! have go; then
	echo "deps: Go 1.26 is needed (https://go.dev/dl); it is not a Debian 12 package" >&2
	exit 1
fi
((${#need[@]} == 0)) && exit 0
if [[ $(id -u) != 0 ]]; then
	echo "deps: missing ${need[*]}; install them as root: apt-get install ${need[*]}" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
