#!/usr/bin/env python3
"""Check AOFlagger's flags: every injected RFI cell flagged, little else.

For every baseline and correlation, each time/channel cell is either one the
RFI went into (rfi.json) or clean. Passes when all injected cells are flagged
and at most MAX_CLEAN of the clean ones are; exits 1 otherwise.
"""
import argparse
import json
import sys

import numpy as np
import casacore.tables as ct

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("ms")
p.add_argument("rfi")
p.add_argument("--max-clean", type=float, default=0.05)
p.add_argument("--report", help="also write what is printed to this file")
a = p.parse_args()
if a.report:
    class _Tee:
        def __init__(self, *streams): self.streams = streams
        def write(self, s): [x.write(s) for x in self.streams]
        def flush(self): [x.flush() for x in self.streams]
    sys.stdout = _Tee(sys.stdout, open(a.report, "w"))

rfi = json.load(open(a.rfi))
ms = ct.table(a.ms, ack=False)
time = ms.getcol("TIME")
flag = ms.getcol("FLAG")                       # (row, channel, correlation)
ms.close()
tindex = np.searchsorted(np.unique(time), time)

injected = np.zeros(flag.shape, dtype=bool)
for ti, ch in rfi["cells"]:
    injected[tindex == ti, ch, :] = True

n_inj, n_clean = injected.sum(), (~injected).sum()
f_inj = flag[injected].sum() / n_inj
f_clean = flag[~injected].sum() / n_clean
missed = sorted({(int(tindex[r]), int(c)) for r, c, _ in np.argwhere(injected & ~flag)})
print("injected RFI cells flagged: %d / %d (%.2f%%), want 100%%"
      % (flag[injected].sum(), n_inj, 100 * f_inj))
print("clean cells flagged: %d / %d (%.2f%%), want < %.1f%%"
      % (flag[~injected].sum(), n_clean, 100 * f_clean, 100 * a.max_clean))
if missed:
    print("RFI cells (time, channel) left unflagged on some baseline:", missed[:20])
ok = f_inj == 1.0 and f_clean < a.max_clean
print("flagging check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
