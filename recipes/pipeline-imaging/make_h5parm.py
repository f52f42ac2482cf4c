#!/usr/bin/env python3
"""Write a gain-solution H5parm of known truth, with noise and outliers.

sol000/phase000 (time, freq, ant): each station's phase drifts linearly in
time (a known offset and rate, within +-2 rad, so nothing wraps), plus
Gaussian noise and one outlier of +1.5 rad. sol000/amplitude000: a constant
gain per station, plus noise and one outlier three times the gain. The truth
(noise-free values, the outliers' indices) goes to a .npz file for the check
of LoSoTo's output.
"""
import argparse

import numpy as np
from losoto.h5parm import h5parm

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--out", default="gains.h5")
p.add_argument("--truth", default="gains-truth.npz")
p.add_argument("--ntime", type=int, default=120)
p.add_argument("--nfreq", type=int, default=4)
p.add_argument("--nant", type=int, default=8)
p.add_argument("--phase-noise", type=float, default=0.1, help="rad")
p.add_argument("--amp-noise", type=float, default=0.02, help="fraction")
p.add_argument("--seed", type=int, default=3)
a = p.parse_args()
rng = np.random.default_rng(a.seed)

times = 4.9e9 + 10.0 * np.arange(a.ntime)
freqs = 140e6 + 4e6 * np.arange(a.nfreq)
ants = np.array(["CS%03d" % (i + 1) for i in range(a.nant)])
shape = (a.ntime, a.nfreq, a.nant)

offset = rng.uniform(-0.5, 0.5, a.nant)
rate = rng.uniform(-0.012, 0.012, a.nant)           # rad per 10 s solution interval
phase_true = np.broadcast_to(offset + rate * np.arange(a.ntime)[:, None, None], shape).copy()
phase = phase_true + rng.normal(0, a.phase_noise, shape)
phase_outlier = (a.ntime // 2 - 7, 1, 3)
phase[phase_outlier] += 1.5

gain = rng.uniform(0.8, 1.2, a.nant)
amp_true = np.broadcast_to(gain, shape).copy()
amp = amp_true * (1 + rng.normal(0, a.amp_noise, shape))
amp_outlier = (a.ntime // 2 + 11, 2, 5)
amp[amp_outlier] = 3 * amp_true[amp_outlier]

H = h5parm(a.out, readonly=False)
ss = H.makeSolset("sol000")
axes = ["time", "freq", "ant"]
ss.makeSoltab("phase", "phase000", axesNames=axes, axesVals=[times, freqs, ants],
              vals=phase, weights=np.ones(shape))
ss.makeSoltab("amplitude", "amplitude000", axesNames=axes, axesVals=[times, freqs, ants],
              vals=amp, weights=np.ones(shape))
H.close()
np.savez(a.truth, phase_true=phase_true, phase_in=phase, phase_outlier=phase_outlier,
         amp_true=amp_true, amp_in=amp, amp_outlier=amp_outlier, phase_noise=a.phase_noise)
print("%s: phase000 and amplitude000, %d times x %d freqs x %d stations; phase drift "
      "%.4f..%.4f rad/interval, noise %.2f rad, outlier +1.5 rad at %s; "
      "amplitude outlier x3 at %s"
      % (a.out, a.ntime, a.nfreq, a.nant, rate.min(), rate.max(), a.phase_noise,
         phase_outlier, amp_outlier))
