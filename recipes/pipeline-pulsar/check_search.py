#!/usr/bin/env python3
"""Check PRESTO's search against the pulsar that was put in.

Each trial DM has a spectrum's .inf (its DM, number of points N, sampling time
dt) and, unless accelsearch found nothing, a candidate list <name>_ACCEL_0.
For each trial the candidate of highest sigma is taken, its frequency from its
Fourier bin, f = r / (N dt) (the list prints the period rounded to its error
bar). The best trial is the one whose top candidate has the highest sigma.
Passes when it is a detection (sigma at least MIN_SIGMA), its period within
PTOL (a fraction) of the true period and its DM within DMTOL of the true DM;
exits 1 otherwise. Prints every trial's best
sigma: the curve peaks at the true DM, where the pulse is least smeared.
"""
import argparse
import json
import os
import re
import sys

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("truth")
p.add_argument("--inf", nargs="+", required=True)
p.add_argument("--accel", nargs="*", default=[])
p.add_argument("--ptol", type=float, default=0.001)
p.add_argument("--dmtol", type=float, default=3.0)
p.add_argument("--min-sigma", type=float, default=8.0,
               help="the best candidate must be at least this significant: a detection")
p.add_argument("--report", help="also write what is printed to this file")
a = p.parse_args()
if a.report:
    class _Tee:
        def __init__(self, *streams): self.streams = streams
        def write(self, s): [x.write(s) for x in self.streams]
        def flush(self): [x.flush() for x in self.streams]
    sys.stdout = _Tee(sys.stdout, open(a.report, "w"))

truth = json.load(open(a.truth))
num = lambda s: float(re.match(r"[-+0-9.]+", s).group(0))   # "143.063(63)" -> 143.063
accel = {os.path.basename(f): f for f in a.accel}


def inf_value(text, key):
    m = re.search(r"^\s*%s.*=\s*(\S+)" % re.escape(key), text, re.M)
    return m.group(1)


trials = []
for path in a.inf:
    text = open(path).read()
    name = inf_value(text, "Data file name without suffix")
    dm = float(inf_value(text, "Dispersion measure"))
    tobs = int(inf_value(text, "Number of bins")) * float(inf_value(text, "Width of each"))
    best = None
    cands = accel.get(name + "_ACCEL_0")
    if cands:
        for line in open(cands):
            f = line.split()
            if not f and best is not None:
                break                               # the per-harmonic section follows
            if len(f) > 7 and f[0].isdigit():
                freq = num(f[7]) / tobs             # FFT 'r' (bins) / T
                c = {"sigma": float(f[1]), "numharm": int(f[4]), "freq_hz": freq,
                     "period_s": 1.0 / freq}
                if best is None or c["sigma"] > best["sigma"]:
                    best = c
    trials.append((dm, best))
trials.sort(key=lambda x: x[0])

for dm, best in trials:
    if best:
        print("DM %6.2f: best candidate sigma %6.2f, P = %.6f s (%d harmonics)"
              % (dm, best["sigma"], best["period_s"], best["numharm"]))
    else:
        print("DM %6.2f: no candidates" % dm)
found = [(dm, b) for dm, b in trials if b]
if not found:
    print("no candidate at any DM\nsearch check: FAIL")
    sys.exit(1)
dm, best = max(found, key=lambda x: x[1]["sigma"])
rel = best["period_s"] / truth["period_s"] - 1
ok_p = abs(rel) <= a.ptol
ok_dm = abs(dm - truth["dm"]) <= a.dmtol
ok_sig = best["sigma"] >= a.min_sigma
print("best: sigma %.2f, want >= %.1f: %s" % (best["sigma"], a.min_sigma, "ok" if ok_sig else "WRONG"))
print("best: DM %.2f (sigma %.2f), want %.2f +- %.1f: %s"
      % (dm, best["sigma"], truth["dm"], a.dmtol, "ok" if ok_dm else "WRONG"))
print("best: P = %.7f s, want %.7f s: relative error %+.2e, want |.| <= %.0e: %s"
      % (best["period_s"], truth["period_s"], rel, a.ptol, "ok" if ok_p else "WRONG"))
ok = ok_p and ok_dm and ok_sig
print("search check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
