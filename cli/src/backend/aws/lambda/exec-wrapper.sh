#!/bin/sh
# lumo's AWS_LAMBDA_EXEC_WRAPPER, shipped beside `bootstrap` in the runner function's package.
#
# The runner function runs on a managed Node.js runtime only so that JavaScript and TypeScript
# tasks have Node.js: Lambda's custom runtimes (provided.*) have none and do not honour exec
# wrappers. The runtime calls this script with its own start command,
#   /var/lang/bin/node [node options] /var/runtime/index.mjs
# and instead of that (Node's runtime client) we start lumo's Rust runner, which speaks the
# Runtime API itself and starts tasks on the runtime's Node, named here by LUMO_NODE.
if [ -z "${LUMO_NODE:-}" ] && [ -n "${1:-}" ] && [ -x "$1" ]; then
    case "$1" in
        */node) LUMO_NODE="$1"; export LUMO_NODE ;;
    esac
fi
exec "${LAMBDA_TASK_ROOT:-/var/task}/bootstrap"
