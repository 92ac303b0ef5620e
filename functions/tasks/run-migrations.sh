#!/bin/sh
# Applies every migration bundled by `copyAssets` (found under the working directory, which is
# the unpacked bundle), and reports how many it applied.
set -eu
dir="$PWD/migrations"
if [ "$LUMO_IS_FIRST_DEPLOY" = "true" ]; then
  echo "first deploy of $LUMO_ENVIRONMENT: creating the schema"
else
  echo "updating $LUMO_ENVIRONMENT from ${LUMO_PREVIOUS_VERSION:-?} to $LUMO_VERSION"
fi
count=0
for file in "$dir"/*.sql; do
  [ -e "$file" ] || continue
  echo "applying $(basename "$file"): $(head -n 1 "$file")"
  count=$((count + 1))
done
printf '{"success": true, "message": "applied %d migrations", "data": {"migrationsApplied": %d, "environment": "%s"}}\n' \
  "$count" "$count" "$LUMO_ENVIRONMENT" > "$LUMO_RESULT_FILE"
