#!/usr/bin/env bash
# Shows the Linux settings that matter for echo benchmarks and capacity tests: the current
# value and the recommended one. Changes nothing unless --apply is given (as root).
#
# usage: scripts/tune.sh            # dry run: show current vs recommended
#        scripts/tune.sh --apply    # set the sysctls and the CPU governor (root)
set -euo pipefail
APPLY=0
case "${1:-}" in
    --apply) APPLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--apply]" >&2; exit 2 ;;
esac

# name | recommended | why
SYSCTLS=(
    "net.core.somaxconn|65535|accept backlog for connection bursts"
    "net.ipv4.tcp_max_syn_backlog|65535|half-open connections during bursts"
    "net.ipv4.ip_local_port_range|1024 65535|client ports for many connections (ringload --churn)"
    "net.core.rmem_max|16777216|socket receive buffer ceiling"
    "net.core.wmem_max|16777216|socket send buffer ceiling"
    "net.ipv4.tcp_rmem|4096 131072 16777216|TCP receive autotuning range"
    "net.ipv4.tcp_wmem|4096 16384 16777216|TCP send autotuning range"
    "net.core.netdev_max_backlog|16384|packets queued per CPU before the stack"
    "kernel.io_uring_disabled|0|0 lets every process use io_uring (ringecho --backend uring, ringload)"
    "fs.file-max|2097152|system-wide descriptors"
)

# The value to set: field by field the larger of current and recommended (never lower a
# limit someone raised), except the port range, whose low end should be low.
target() { # name have want
    local name=$1 have=$2 want=$3
    if [ "$name" = net.ipv4.ip_local_port_range ]; then
        read -r hl hh <<<"$have"; read -r wl wh <<<"$want"
        echo "$((hl < wl ? hl : wl)) $((hh > wh ? hh : wh))"
        return
    fi
    local -a h w out
    read -r -a h <<<"$have"; read -r -a w <<<"$want"
    for i in "${!w[@]}"; do
        out+=("$(( ${h[$i]:-0} > ${w[$i]} ? ${h[$i]:-0} : ${w[$i]} ))")
    done
    echo "${out[*]}"
}

changed=0
printf '%-32s %-24s %-24s %s\n' setting current recommended why
for entry in "${SYSCTLS[@]}"; do
    IFS='|' read -r name want why <<<"$entry"
    path="/proc/sys/${name//./\/}"
    if [ ! -r "$path" ]; then
        printf '%-32s %-24s %-24s %s\n' "$name" "(absent)" "$want" "$why"
        continue
    fi
    have=$(tr -s '\t ' ' ' <"$path")
    if [ "$name" = kernel.io_uring_disabled ]; then
        set_to=$want
    else
        set_to=$(target "$name" "$have" "$want")
    fi
    mark=""
    [ "$have" != "$set_to" ] && mark=" *"
    printf '%-32s %-24s %-24s %s%s\n' "$name" "$have" "$set_to" "$why" "$mark"
    if [ $APPLY = 1 ] && [ "$have" != "$set_to" ]; then
        sysctl -q -w "$name=$set_to" && changed=$((changed + 1))
    fi
done

nofile_soft=$(ulimit -Sn); nofile_hard=$(ulimit -Hn)
printf '%-32s %-24s %-24s %s\n' "nofile (ulimit -n)" "$nofile_soft/$nofile_hard" "1048576" \
    "ringecho raises its soft limit to the hard one; raise the hard one in limits.conf or systemd (LimitNOFILE)"
printf '%-32s %-24s %-24s %s\n' "memlock (ulimit -l)" "$(ulimit -Sl)" "unlimited or ≥ 64 MiB" \
    "io_uring before 5.12 charged ring memory to it"

for gov in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do
    [ -r "$gov" ] || { printf '%-32s %-24s %-24s %s\n' "cpu governor" "(no cpufreq)" "performance" "virtual machines usually have none"; break; }
    have=$(cat "$gov")
    printf '%-32s %-24s %-24s %s\n' "${gov#/sys/devices/system/cpu/}" "$have" "performance" "steady clocks for repeatable numbers"
    if [ $APPLY = 1 ] && [ "$have" != performance ]; then
        echo performance >"$gov" && changed=$((changed + 1))
    fi
done

irqs=$(grep -cE 'virtio|eth|mlx|ixgbe|ena' /proc/interrupts 2>/dev/null || true)
printf '%-32s %-24s %-24s %s\n' "NIC IRQ affinity" "${irqs:-0} NIC IRQ lines" "off the benchmark CPUs" \
    "see /proc/irq/*/smp_affinity_list; not changed by this script (loopback has no NIC IRQs)"

# The kernel's loss and stall counters (since boot) and the setting that a growing one asks
# to raise; ringload shows how much each grew during a run, ringecho --metrics exports them.
counter() { # SECTION KEY: the value from /proc/net/snmp or /proc/net/netstat
    cat /proc/net/snmp /proc/net/netstat 2>/dev/null | awk -v s="$1:" -v k="$2" '
        $1 == s && !hdr { for (i = 2; i <= NF; i++) col[$i] = i; hdr = 1; next }
        $1 == s && hdr { if (k in col) print $col[k]; exit }'
}
for entry in \
    "Udp RcvbufErrors|net.core.rmem_max, net.core.rmem_default and the socket's SO_RCVBUF" \
    "Udp SndbufErrors|net.core.wmem_max, net.core.wmem_default and the socket's SO_SNDBUF" \
    "Udp InErrors|receive errors, buffer drops included: see RcvbufErrors" \
    "TcpExt ListenOverflows|net.core.somaxconn and the listener's backlog (listen(2))" \
    "TcpExt ListenDrops|net.core.somaxconn, net.ipv4.tcp_max_syn_backlog and the backlog" \
    "Tcp RetransSegs|loss or a full queue on the path: see the counters above"; do
    name=${entry%%|*}; why=${entry#*|}
    printf '%-32s %-24s %-24s %s\n' "counter ${name/ /:}" "$(counter $name)" "should not grow in a run" "$why"
done

if [ $APPLY = 1 ]; then
    echo "applied $changed change(s)"
else
    echo "dry run: nothing changed (* = differs from the recommendation; --apply to set, as root)"
fi
