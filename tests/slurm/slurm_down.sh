#!/usr/bin/env bash
# Stop the daemons tests/slurm/slurm_up.sh started in DIR (by their pid files only).
dir=$(realpath -m "$1")
for name in slurmd slurmctld munged; do
  f="$dir/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
done
exit 0
