#!/usr/bin/env bash
# System packages the full test suite uses: Debian's Chromium (browser tests) and PostgreSQL
# (distributed tuning tests). Installed only when missing and when we may (root + apt-get).
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${need[*]}"
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null 2>&1 || echo "warning: could not install ${need[*]}; those tests will be skipped"
else
  echo "note: ${need[*]} missing and not root; the tests that need them will be skipped"
fi
exit 0
