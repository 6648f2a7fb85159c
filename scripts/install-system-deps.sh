#!/usr/bin/env bash
# Installs the Debian packages the test suite runs against for real:
# Dovecot (POP3; LMTP and IMAP for the "existing platform" the delivery tests deliver
# into and read back), PostgreSQL (multi-process tests), Chromium (browser tests).
# With --bench, also the peers the benchmarks compare against: fetchmail and getmail6.
# Idempotent: does nothing when they are all present.
set -euo pipefail
need=()
if [ "${1:-}" = "--bench" ]; then
  command -v fetchmail >/dev/null 2>&1 || need+=(fetchmail)
  command -v getmail >/dev/null 2>&1 || need+=(getmail6)
fi
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-core dovecot-pop3d)
[ -x /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-lmtpd)
[ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
