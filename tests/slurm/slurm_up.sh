#!/usr/bin/env bash
# A real single-node SLURM on 127.0.0.1 for the tests: munged + slurmctld + slurmd, all state under DIR.
#   tests/slurm/slurm_up.sh DIR CTLD_PORT SLURMD_PORT   -> prints the path of DIR/slurm.conf (export SLURM_CONF)
#   tests/slurm/slurm_down.sh DIR                        -> stops the three daemons by their pid files
# Needs Debian's slurm-wlm and munge (`make install-slurm`) and root (slurmd runs jobs as their user).
set -euo pipefail
dir=$(realpath -m "$1"); ctld_port=$2; slurmd_port=$3
for bin in munged slurmctld slurmd sbatch squeue; do
  command -v "$bin" >/dev/null || { echo "slurm_up: $bin not found (make install-slurm)" >&2; exit 3; }
done
mkdir -p "$dir"/{state,spool,log}
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

# munge: its own key, socket and pid file in DIR (a system munged, if any, is left alone)
head -c 1024 /dev/urandom > "$dir/munge.key"
chmod 0400 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" --pid-file="$dir/munged.pid" \
       --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed"

cat > "$dir/slurm.conf" <<CONF
ClusterName=harnesstest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=600
SlurmdTimeout=60
KillWait=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$host"
for _ in $(seq 1 60); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  if [ "$state" = "idle" ]; then echo "$SLURM_CONF"; exit 0; fi
  sleep 1
done
echo "slurm_up: node not idle after 60 s (state: ${state:-none}); see $dir/log" >&2
exit 1
