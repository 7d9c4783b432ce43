#!/usr/bin/env bash
# Lists EP_* environment knobs that the code reads but docs/env.md does not
# mention. Exit 1 when some are missing.
set -euo pipefail
doc=docs/env.md
knobs=$( { grep -rhoE 'EP_(STRING_)?PARAM\([A-Za-z0-9]+, *"[A-Z0-9_]+"' src transports tools tests \
             | sed -E 's/.*"([A-Z0-9_]+)"/EP_\1/';
           grep -rhoE '(getenv|epGetEnv)\("EP_[A-Z0-9_]+"' src transports tools tests scripts \
             | sed -E 's/.*"(EP_[A-Z0-9_]+)"/\1/';
           grep -rhoE '\$\{?EP_[A-Z0-9_]+' scripts tests pkg .ci --include='*.sh' --include=eprun --include=run \
             | sed -E 's/\$\{?//'; } | sort -u)
missing=0
for k in $knobs; do
  case $k in EP_UNITTEST_*) k=EP_UNITTEST_ ;; esac
  if ! grep -q "$k" "$doc"; then
    echo "check_env_doc: $k is read by the code but not documented in $doc"
    missing=1
  fi
done
[ $missing = 0 ] && echo "check_env_doc: all $(echo "$knobs" | wc -w) knobs documented in $doc"
exit $missing
