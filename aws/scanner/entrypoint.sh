#!/bin/bash
# Starts clamd and the scan worker; SIGTERM (ECS stopping the task) goes to the worker,
# which stops polling and finishes its tasks in flight; clamd is stopped after it.
set -euo pipefail

# clamd refuses to start without databases: copy the mirror first.
scan-worker sync-definitions

clamd -c /etc/clamav/clamd.conf &
clamd_pid=$!

scan-worker run &
worker_pid=$!

trap 'kill -TERM "$worker_pid" 2>/dev/null || true' TERM INT

# Whichever ends first ends the task: a worker without clamd, or clamd without a worker,
# is of no use, and ECS starts a new task.
set +e
wait -n "$clamd_pid" "$worker_pid"
status=$?
if kill -0 "$worker_pid" 2>/dev/null; then
  # clamd died: the worker cannot scan; stop it the graceful way.
  kill -TERM "$worker_pid" 2>/dev/null
fi
wait "$worker_pid"
kill -TERM "$clamd_pid" 2>/dev/null
wait "$clamd_pid"
exit "$status"
