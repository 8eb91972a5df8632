#!/bin/sh
# Backend side of l4lb's L2 direct server return (`l4lb-agent run --xdp-dsr l2`).
#
# With DSR the node's XDP program changes only the destination MAC of a
# client's packet: it reaches this backend still addressed to the VIP, and
# the backend answers the client directly from the VIP. For that the backend
#   1. holds each VIP it serves on the loopback (/32, /128), so the kernel
#      takes packets to it as local;
#   2. never answers ARP for a VIP on its network interfaces, nor announces
#      one, or the L2 segment would send VIP traffic around the node:
#      arp_ignore=1 (answer only for addresses of the receiving interface)
#      and arp_announce=2 (ARP requests always carry the interface's own
#      address). IPv6 neighbour discovery answers only for addresses of the
#      receiving interface already, so a VIP on lo stays unannounced;
#   3. listens on the VIP's own port (the node translates nothing; a backend
#      on another port is translated as without DSR, and its replies go back
#      through the node).
# Replies leave by the backend's route to the client. If that differs from
# the interface requests arrive on, reverse-path filtering must be loose
# (rp_filter=2) or off there; this script does not change it.
#
# Usage: dsr-backend-setup.sh VIP...        e.g. 11.0.0.1 fd01:c::1
#        dsr-backend-setup.sh --undo VIP...  removes the addresses (the ARP
#                                            settings stay: they are harmless)
set -eu

undo=0
if [ "${1:-}" = "--undo" ]; then
    undo=1
    shift
fi
if [ $# -eq 0 ]; then
    echo "usage: $0 [--undo] VIP..." >&2
    exit 2
fi

if [ $undo -eq 0 ]; then
    for scope in all default; do
        sysctl -q -w "net.ipv4.conf.$scope.arp_ignore=1"
        sysctl -q -w "net.ipv4.conf.$scope.arp_announce=2"
    done
fi

for vip in "$@"; do
    case "$vip" in
    *:*) cidr="$vip/128"; extra="nodad" ;;
    *) cidr="$vip/32"; extra="" ;;
    esac
    if [ $undo -eq 1 ]; then
        ip addr del "$cidr" dev lo 2>/dev/null || true
    elif ! ip addr show dev lo | grep -q " $cidr "; then
        # shellcheck disable=SC2086 # $extra is empty or one word
        ip addr add "$cidr" dev lo $extra
    fi
done
