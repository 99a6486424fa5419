#!/bin/bash
# Starts a single-node SLURM cluster on this machine (Debian/Ubuntu, as root), for trying
# the job-array template without a real cluster:
#
#   bash examples/slurm/local-cluster.sh          # install if needed, configure, start
#   sinfo                                         # one node, state idle
#
# It installs slurm-wlm and munge when they are missing, writes /etc/slurm/slurm.conf for
# this host (CPUs and memory from `slurmd -C`, no accounting, no cgroups so it also runs in
# containers), and starts munged, slurmctld and slurmd. Exits non-zero, with the reason,
# when the node does not come up. Not for a shared machine: it replaces slurm.conf.
set -euo pipefail

say() { echo "local-cluster: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "must run as root (it installs packages and starts daemons)"
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
node=$(slurmd -C | head -n 1)
case "$node" in
    NodeName=*) ;;
    *) say "slurmd -C did not describe this node: $node"; exit 1 ;;
esac
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mim
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

if [ ! -s /etc/munge/munge.key ]; then
    (command -v mungekey >/dev/null && mungekey --create --force) ||
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key

pgrep -x munged >/dev/null || runuser -u munge -- munged --force 2>/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 30); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle* | mixed* | allocated*) say "node $host is $state"; exit 0 ;;
    esac
    sleep 1
done
say "the node did not come up (sinfo: '${state:-no answer}'); see /var/log/slurm/*.log"
exit 1
