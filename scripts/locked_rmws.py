#!/usr/bin/env python3
"""Locked read-modify-writes executed in a callgrind profile.

    scripts/locked_rmws.py CALLGRIND_OUT

The profile must be recorded with `--dump-instr=yes`. Every object file it
names is disassembled with objdump; an instruction with a `lock` prefix, or
an `xchg` with a memory operand (locked without the prefix), is a locked
read-modify-write. Prints how many of them ran, in total, as one integer.
"""
import re
import subprocess
import sys

NAME = re.compile(r"^(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=\((\d+)\)(?: (.*))?$")
POSITION = re.compile(r"^(0x[0-9a-fA-F]+|\+\d+|-\d+|\*)\s+(\S+)\s+(\d+)")


def locked_addresses(path):
    """The addresses of the locked instructions of one object file."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True)
    if out.returncode != 0:
        return set()
    found = set()
    for line in out.stdout.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(.*)$", line)
        if not m:
            continue
        text = m.group(2)
        if re.match(r"lock\b", text) or (re.match(r"xchg", text) and "(" in text):
            found.add(int(m.group(1), 16))
    return found


def main(profile):
    objects = {}
    locked = {}
    total = 0
    current = None
    address = 0
    skip_next = False
    with open(profile) as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = NAME.match(line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    if kind in ("ob", "cob"):
                        objects[ident] = name
                if kind == "ob":
                    current = objects.get(ident)
                    if current is not None and current not in locked:
                        locked[current] = locked_addresses(current)
                continue
            if line.startswith("calls="):
                skip_next = True  # the next line's cost is the callee's, inclusive
                continue
            m = POSITION.match(line)
            if not m:
                continue
            pos, cost = m.group(1), int(m.group(3))
            if pos.startswith("0x"):
                address = int(pos, 16)
            elif pos[0] in "+-":
                address += int(pos)
            if skip_next:
                skip_next = False
                continue
            if current is not None and address in locked[current]:
                total += cost
    print(total)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
