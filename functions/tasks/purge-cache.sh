#!/bin/sh
# A manual-only task with arguments: `lumo run purge-cache --env dev --arg target=sessions`.
set -eu
echo "purging cache namespace $LUMO_ARG_TARGET ($LUMO_ARG_MODE) in $LUMO_ENVIRONMENT, requested by run $LUMO_RUN_ID"
printf '{"success": true, "message": "purged %s", "data": {"namespace": "%s", "mode": "%s"}}' \
  "$LUMO_ARG_TARGET" "$LUMO_ARG_TARGET" "$LUMO_ARG_MODE" > "$LUMO_RESULT_FILE"
