#!/usr/bin/env python3
"""Copy the predicted visibilities (MODEL_DATA) to DATA, adding thermal noise.

DATA = MODEL_DATA + Gaussian noise of NOISE Jy in each real and imaginary
part, in every correlation: the simulated observation is then what a
telescope would have recorded of the sky model.
"""
import argparse

import numpy as np
import casacore.tables as ct

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("ms")
p.add_argument("--noise", type=float, default=0.5, help="Jy")
p.add_argument("--seed", type=int, default=5)
a = p.parse_args()
rng = np.random.default_rng(a.seed)

t = ct.table(a.ms, readonly=False, ack=False)
model = t.getcol("MODEL_DATA")
noise = a.noise * (rng.standard_normal(model.shape) + 1j * rng.standard_normal(model.shape))
t.putcol("DATA", (model + noise).astype(np.complex64))
t.close()
xx = model[..., 0]
print("DATA = MODEL_DATA + noise (%.2f Jy): mean |XX| of the model %.3f Jy, max %.3f Jy"
      % (a.noise, np.abs(xx).mean(), np.abs(xx).max()))
