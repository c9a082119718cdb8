# The reads `make bench` times in a Linux guest (bench/blk-linux.toml; `script` of
# images/bench-blk-linux.toml, run by /init once the guest is ready). The clock is the
# kernel's own (`now at N nsecs` of /proc/timer_list). All reads bypass the page cache
# (iflag=direct), so each one goes to the disk. Anything that fails says `bench: FAILED`,
# which `mica bench` reports instead of a figure.
# On the console even inside $(...), whose output is captured.
fail() { echo "bench: FAILED: $1" >&2; exit 1; }
now() {
    t=$(sed -n 's/^now at \([0-9]*\) nsecs$/\1/p' /proc/timer_list | head -n 1)
    [ -n "$t" ] || fail "no clock in /proc/timer_list"
    echo "$t"
}
say() { echo "bench: $1: median $2 ns, min $2 ns, max $2 ns, $3 iterations"; }
[ -b /dev/vda ] || fail "no /dev/vda"

# Sequential: 64 MiB in reads of 1 MiB.
t0=$(now) || exit 1
dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null || fail "dd of 64 MiB"
t1=$(now) || exit 1
say blk-seq-read-64mib $((t1 - t0)) 1

# Random: 4 KiB reads at 256 pseudo-random 4 KiB-aligned offsets of the first 64 MiB, one
# `dd` each; the same loop reading /dev/zero is taken off, so what is left is the reads.
reads() {
    x=12345 i=0
    while [ $i -lt 256 ]; do
        x=$(( (x * 1103515245 + 12345) % 2147483648 ))
        dd if="$1" of=/dev/null bs=4k count=1 skip=$(( x / 256 % 16384 )) $2 2>/dev/null ||
            return 1
        i=$((i + 1))
    done
}
t0=$(now) || exit 1
reads /dev/zero || fail "reads of /dev/zero"
t1=$(now) || exit 1
reads /dev/vda iflag=direct || fail "random reads of /dev/vda"
t2=$(now) || exit 1
say blk-rand-read-4k $(( ((t2 - t1) - (t1 - t0)) / 256 )) 256
