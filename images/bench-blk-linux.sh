# The reads `make bench` times in a Linux guest (bench/blk-linux.toml; `script` of
# images/bench-blk-linux.toml, run by /init once the guest is ready). The clock is the
# kernel's own (`now at N nsecs` of /proc/timer_list): under `-icount` it counts executed
# instructions, so the figures are the same from run to run. All reads bypass the page cache
# (iflag=direct), so each one goes to the disk.
now() { sed -n 's/^now at \([0-9]*\) nsecs$/\1/p' /proc/timer_list | head -n 1; }
say() { echo "bench: $1: median $2 ns, min $2 ns, max $2 ns, $3 iterations"; }

# Sequential: 64 MiB in reads of 1 MiB.
t0=$(now)
dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null
t1=$(now)
say blk-seq-read-64mib $((t1 - t0)) 1

# Random: 4 KiB reads at 256 pseudo-random 4 KiB-aligned offsets of the first 64 MiB, one
# `dd` each; the same loop reading /dev/zero is taken off, so what is left is the reads.
reads() {
    x=12345 i=0
    while [ $i -lt 256 ]; do
        x=$(( (x * 1103515245 + 12345) % 2147483648 ))
        dd if="$1" of=/dev/null bs=4k count=1 skip=$(( x / 256 % 16384 )) $2 2>/dev/null
        i=$((i + 1))
    done
}
t0=$(now); reads /dev/zero; t1=$(now); reads /dev/vda iflag=direct; t2=$(now)
say blk-rand-read-4k $(( ((t2 - t1) - (t1 - t0)) / 256 )) 256
echo "bench: done"
