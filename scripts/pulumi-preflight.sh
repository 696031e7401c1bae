#!/usr/bin/env bash
# Checks before make runs the Pulumi CLI (up, preview, refresh, destroy), so a missing tool or
# setting fails at once with what to do, not halfway through with a bare shell error:
#   1. the Pulumi CLI is on PATH (or where $PULUMI points);
#   2. it is at least MIN_VERSION (README, "Prerequisites", says why that version);
#   3. the stack's secrets can be decrypted: a passphrase (PULUMI_CONFIG_PASSPHRASE or
#      PULUMI_CONFIG_PASSPHRASE_FILE) unless Pulumi Cloud or another secrets provider holds the key.
# Usage: scripts/pulumi-preflight.sh STACK   (run from the project directory)
set -euo pipefail

MIN_VERSION=3.206.0
INSTALL_URL=https://www.pulumi.com/docs/install/
PULUMI=${PULUMI:-pulumi}
stack=${1:?usage: $0 STACK}

fail() {
  echo "make: $*" >&2
  exit 1
}

# 1. The CLI.
command -v "$PULUMI" >/dev/null 2>&1 ||
  fail "the Pulumi CLI ($PULUMI) is not on PATH. Install v$MIN_VERSION or newer: $INSTALL_URL"

# 2. Its version. `pulumi version` prints e.g. v3.206.0 (a dev build: v3.207.0-alpha.x...); a
# notice about a newer release goes to stderr, which is not read.
reported=$("$PULUMI" version 2>/dev/null | head -n 1) || fail "\`$PULUMI version\` failed; reinstall: $INSTALL_URL"
if [[ ! $reported =~ ^v?([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
  fail "cannot read the Pulumi CLI version from \`$PULUMI version\`: '$reported'"
fi
have=("${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}")
IFS=. read -r -a need <<<"$MIN_VERSION"
for i in 0 1 2; do
  # 10# : numbers such as 08 are decimal, not octal.
  if ((10#${have[i]} > 10#${need[i]})); then break; fi
  if ((10#${have[i]} < 10#${need[i]})); then
    fail "Pulumi CLI $reported is too old: this project needs v$MIN_VERSION or newer (README, Prerequisites). Upgrade: $INSTALL_URL"
  fi
done

# 3. The secrets key. Another secrets provider named in the stack file (awskms://, gcpkms://,
# azurekeyvault://, hashivault://, or Pulumi Cloud's `default`) needs no passphrase; neither does
# Pulumi Cloud's own key, unless the stack file chose `passphrase` explicitly.
# Set, even to "", is what Pulumi checks (os.LookupEnv in pkg/secrets/passphrase/manager.go):
# an empty passphrase is valid there, so it is accepted here, with a warning.
if [[ -n ${PULUMI_CONFIG_PASSPHRASE+set} ]]; then
  [[ -n $PULUMI_CONFIG_PASSPHRASE ]] ||
    echo "make: warning: PULUMI_CONFIG_PASSPHRASE is empty: this stack's secrets are encrypted with an empty passphrase" >&2
  exit 0
fi
if [[ -n ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
  [[ -r $PULUMI_CONFIG_PASSPHRASE_FILE ]] ||
    fail "PULUMI_CONFIG_PASSPHRASE_FILE=$PULUMI_CONFIG_PASSPHRASE_FILE is not a readable file"
  exit 0
fi
provider=""
if [[ -f Pulumi.$stack.yaml ]]; then
  provider=$(sed -n 's/^secretsprovider:[[:space:]]*//p' "Pulumi.$stack.yaml" | tr -d "\"'" | head -n 1)
fi
backend=${PULUMI_BACKEND_URL:-the backend of pulumi login}
if [[ -n $provider && $provider != passphrase* ]]; then
  exit 0
fi
if [[ -z $provider && $backend =~ ^https://(api|app)\.pulumi\.com ]]; then
  exit 0
fi
fail "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): it encrypts the secrets of stack $stack in $backend; keep it safe, it cannot be recovered"
