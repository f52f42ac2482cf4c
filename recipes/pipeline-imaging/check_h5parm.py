#!/usr/bin/env python3
"""Check LoSoTo's output against the known truth of the gain solutions.

SMOOTH (running median in time) of phase000: the smoothed phases must lie
closer to the noise-free drift than the input did (rms error at most half the
input's), everywhere within MAXERR rad of the truth, the +1.5 rad outlier
included. CLIP of amplitude000: the outlier's weight must be 0 and every other
weight still 1. Exits 1 if any of these fails.
"""
import argparse
import sys

import numpy as np
from losoto.h5parm import h5parm

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("h5")
p.add_argument("truth")
p.add_argument("--maxerr", type=float, default=0.3, help="rad")
p.add_argument("--report", help="also write what is printed to this file")
a = p.parse_args()
if a.report:
    class _Tee:
        def __init__(self, *streams): self.streams = streams
        def write(self, s): [x.write(s) for x in self.streams]
        def flush(self): [x.flush() for x in self.streams]
    sys.stdout = _Tee(sys.stdout, open(a.report, "w"))

t = np.load(a.truth)
H = h5parm(a.h5, readonly=True)
ss = H.getSolset("sol000")
ph = ss.getSoltab("phase000")
phase = ph.getValues(retAxesVals=False)
am = ss.getSoltab("amplitude000")
w_amp = am.getValues(retAxesVals=False, weight=True)
hist = ph.getHistory() + am.getHistory()
H.close()

wrap = lambda x: np.angle(np.exp(1j * x))
err_in = wrap(t["phase_in"] - t["phase_true"])
err_out = wrap(phase - t["phase_true"])
rms_in, rms_out = np.sqrt(np.mean(err_in ** 2)), np.sqrt(np.mean(err_out ** 2))
po = tuple(int(i) for i in t["phase_outlier"])
ok_rms = rms_out <= 0.5 * rms_in
ok_max = np.abs(err_out).max() <= a.maxerr
print("phase000 smoothed: rms error %.4f rad (input %.4f), want <= %.4f: %s"
      % (rms_out, rms_in, 0.5 * rms_in, "ok" if ok_rms else "WRONG"))
print("phase000 smoothed: max error %.4f rad (input %.4f), want <= %.2f: %s"
      % (np.abs(err_out).max(), np.abs(err_in).max(), a.maxerr, "ok" if ok_max else "WRONG"))
print("phase000 outlier at %s: input %+.3f rad from truth, smoothed %+.3f"
      % (po, err_in[po], err_out[po]))

ao = tuple(int(i) for i in t["amp_outlier"])
flagged = np.argwhere(w_amp == 0)
ok_clip = w_amp[ao] == 0 and len(flagged) == 1
print("amplitude000 clipped: %d of %d solutions flagged %s, want exactly the outlier %s: %s"
      % (len(flagged), w_amp.size, [tuple(int(i) for i in f) for f in flagged[:5]], ao,
         "ok" if ok_clip else "WRONG"))
ok = ok_rms and ok_max and ok_clip
print("losoto check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
