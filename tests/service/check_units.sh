#!/bin/sh
# Checks each systemd unit in systemd/ with systemd-analyze: `verify` (syntax, directives, the
# binaries it runs; man pages are not installed in a build tree) and the offline security review,
# which must rate the unit at an exposure of 2.0 or lower.
# Usage: check_units.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for unit in "$src"/systemd/*.service; do
  name=$(basename "$unit")
  # verify needs the programs the unit runs: point it at the build tree's.
  sed -e "s|/usr/sbin/voxd-daemon|$build/daemon/voxd-daemon|g" \
      -e "s|/usr/sbin/voxd-tracker|$build/tracker/voxd-tracker|g" "$unit" > "$work/$name"
  if ! systemd-analyze verify --man=no "$work/$name"; then
    echo "$name: systemd-analyze verify failed" >&2
    status=1
  fi
  if ! out=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1); then
    printf '%s\n' "$out" | tail -n 25 >&2
    echo "$name: exposure above 2.0" >&2
    status=1
  fi
  printf '%s: %s\n' "$name" "$(printf '%s\n' "$out" | grep 'Overall exposure')"
done
exit $status
