#!/usr/bin/python3
"""Where a loaded XDP program spends its time, by source line.

perf on this kernel cannot annotate JIT-compiled BPF (no libopcodes), but it does sample inside
it. This samples one CPU with `perf record`, asks the kernel for the program's JIT line table
(BPF_OBJ_GET_INFO_BY_FD: jited_line_info, line_info and the program's BTF strings), and counts
the samples by the source line whose machine code they hit. Samples land on the instruction
after a stalled load (skid), so a line's share is where the CPU waited, not always what it
waited for: compare runs, one change at a time.

usage (as root, while traffic runs through the program):
    bench/tools/bpf-lines.py NAME [--cpu N] [--seconds S] [--top K]
NAME: a substring of the program's name (e.g. ipwarden_sink). Used in session 20 with
`ipwarden-bench spray 1000000 ipwarden --unblocked --syn` running (the receiver's NAPI on CPU 1).
"""
import argparse, bisect, collections, ctypes, os, struct, subprocess, sys, tempfile

SYS_BPF = 321  # x86-64
PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, BTF_GET_FD_BY_ID = 11, 13, 15, 19
libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(SYS_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r, buf.raw


def obj_info(fd, buf):
    bpf(OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, len(buf), ctypes.addressof(buf)))


# Offsets in struct bpf_prog_info (include/uapi/linux/bpf.h).
NAME, NR_KSYMS, KSYMS = 64, 104, 112
BTF_ID, NR_LINE_INFO, LINE_INFO, JITED_LINE_INFO = 128, 148, 152, 160
NR_JITED_LINE_INFO, LINE_INFO_REC_SIZE, JITED_LINE_INFO_REC_SIZE = 168, 172, 176


def find_program(name):
    next_id = 0
    while True:
        try:
            _, raw = bpf(PROG_GET_NEXT_ID, struct.pack("II", next_id, 0))
        except OSError:
            sys.exit(f"no loaded BPF program's name contains {name!r}")
        next_id = struct.unpack_from("II", raw)[1]
        fd, _ = bpf(PROG_GET_FD_BY_ID, struct.pack("III", next_id, 0, 0))
        info = ctypes.create_string_buffer(256)
        obj_info(fd, info)
        if name in info.raw[NAME:NAME + 16].split(b"\0")[0].decode():
            return fd
        os.close(fd)


def btf_strings(btf_id):
    fd, _ = bpf(BTF_GET_FD_BY_ID, struct.pack("I", btf_id))
    info = ctypes.create_string_buffer(64)
    obj_info(fd, info)
    size = struct.unpack_from("I", info, 8)[0]
    raw = ctypes.create_string_buffer(size)
    info = ctypes.create_string_buffer(64)
    struct.pack_into("QI", info, 0, ctypes.addressof(raw), size)
    obj_info(fd, info)
    os.close(fd)
    hdr_len, _, _, str_off, str_len = struct.unpack_from("IIIII", raw, 4)
    return raw.raw[hdr_len + str_off:hdr_len + str_off + str_len]


def ranges(fd):
    """The [start, end) addresses of the program's JIT-compiled functions (it and its
    subprograms): samples elsewhere belong to other programs."""
    info = ctypes.create_string_buffer(256)
    obj_info(fd, info)
    n = struct.unpack_from("I", info, NR_KSYMS)[0]
    ksyms = ctypes.create_string_buffer(n * 8)
    lens = ctypes.create_string_buffer(n * 4)
    info = ctypes.create_string_buffer(256)
    struct.pack_into("II", info, NR_KSYMS, n, n)
    struct.pack_into("QQ", info, KSYMS, ctypes.addressof(ksyms), ctypes.addressof(lens))
    obj_info(fd, info)
    return [(struct.unpack_from("Q", ksyms, i * 8)[0],
             struct.unpack_from("Q", ksyms, i * 8)[0] + struct.unpack_from("I", lens, i * 4)[0])
            for i in range(n)]


def line_table(fd):
    """[(jited address, "file:line source text")], sorted by address."""
    info = ctypes.create_string_buffer(256)
    obj_info(fd, info)
    nli = struct.unpack_from("I", info, NR_LINE_INFO)[0]
    njli = struct.unpack_from("I", info, NR_JITED_LINE_INFO)[0]
    btf_id = struct.unpack_from("I", info, BTF_ID)[0]
    if not njli:
        sys.exit("the program has no JIT line info (loaded without BTF?)")
    li = ctypes.create_string_buffer(nli * 16)
    jli = ctypes.create_string_buffer(njli * 8)
    info = ctypes.create_string_buffer(256)
    struct.pack_into("I", info, NR_LINE_INFO, nli)
    struct.pack_into("Q", info, LINE_INFO, ctypes.addressof(li))
    struct.pack_into("Q", info, JITED_LINE_INFO, ctypes.addressof(jli))
    struct.pack_into("I", info, NR_JITED_LINE_INFO, njli)
    struct.pack_into("II", info, LINE_INFO_REC_SIZE, 16, 8)
    obj_info(fd, info)
    strs = btf_strings(btf_id)

    def text(off):
        return strs[off:strs.index(b"\0", off)].decode(errors="replace")

    table = []
    for i in range(min(nli, njli)):
        addr = struct.unpack_from("Q", jli, i * 8)[0]
        _, file_off, line_off, line_col = struct.unpack_from("IIII", li, i * 16)
        where = f"{text(file_off).rsplit('/', 1)[-1]}:{line_col >> 10}"
        table.append((addr, f"{where} {text(line_off).strip()[:100]}"))
    table.sort()
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    fd = find_program(a.name)
    table, funcs = line_table(fd), ranges(fd)
    addrs = [t[0] for t in table]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-C", str(a.cpu), "-o", data, "--",
                        "sleep", str(a.seconds)], check=True, stderr=subprocess.DEVNULL)
        out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], check=True,
                             capture_output=True, text=True).stdout
    total, in_prog = 0, collections.Counter()
    for row in out.splitlines():
        parts = row.split()
        if not parts:
            continue
        total += 1
        ip = int(parts[0], 16)
        if any(lo <= ip < hi for lo, hi in funcs):
            i = bisect.bisect_right(addrs, ip) - 1
            in_prog[table[i][1] if i >= 0 else "?"] += 1
    n = sum(in_prog.values())
    print(f"{total} samples on CPU {a.cpu}, {n} ({100 * n / max(total, 1):.1f} %) in the program")
    for where, k in in_prog.most_common(a.top):
        print(f"{k:7d} {100 * k / max(n, 1):5.1f} %  {where}")


if __name__ == "__main__":
    main()
