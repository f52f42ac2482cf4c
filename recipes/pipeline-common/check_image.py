#!/usr/bin/env python3
"""Check a restored WSClean image against the sky that was put in.

For each source truth.json expects (RA, Dec, flux; by default those put in): its true pixel from the image's
FITS WCS, then the brightest pixel within SEARCH pixels of it (for a single
source the brightest pixel of the whole image); passes when that pixel is
within TOL pixels of the true one in both axes and its value (Jy/beam: the
flux of an unresolved source) within FLUXTOL of the true flux. With
--max-other, the brightest pixel away from every source must also be fainter
than that fraction of the faintest source: no spurious source, no artefact.
Exits 1 if any of this fails.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

warnings.simplefilter("ignore", FITSFixedWarning)

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("image")
p.add_argument("truth")
p.add_argument("--tol", type=float, default=1.0, help="pixels")
p.add_argument("--fluxtol", type=float, default=0.10, help="fraction")
p.add_argument("--search", type=int, default=0,
               help="search radius (pixels) around each source; 0: the whole image")
p.add_argument("--max-other", type=float, default=0.0,
               help="if > 0: the brightest pixel farther than SEARCH from every source "
                    "must be under this fraction of the faintest source's flux")
p.add_argument("--report", help="also write what is printed to this file")
a = p.parse_args()
if a.report:
    class _Tee:
        def __init__(self, *streams): self.streams = streams
        def write(self, s): [x.write(s) for x in self.streams]
        def flush(self): [x.flush() for x in self.streams]
    sys.stdout = _Tee(sys.stdout, open(a.report, "w"))

truth = json.load(open(a.truth))
with fits.open(a.image) as hdul:
    hdr, img = hdul[0].header, hdul[0].data
wcs = WCS(hdr).celestial
plane = np.asarray(img).reshape(img.shape[-2:])   # (y, x): one frequency, one Stokes
ny, nx = plane.shape
rms = 1.4826 * np.median(np.abs(plane - np.median(plane)))
print("%s: %d x %d pixels of %.1f arcsec, peak %.4f Jy/beam, noise (MAD) %.5f Jy/beam"
      % (os.path.basename(a.image), nx, ny, abs(hdr["CDELT1"]) * 3600, plane.max(), rms))

ok = True
ys, xs = np.mgrid[0:ny, 0:nx]
elsewhere = np.ones(plane.shape, dtype=bool)
expected = truth.get("expected", truth["sources"])
for s in expected:
    x0, y0 = wcs.all_world2pix([[s["ra_deg"], s["dec_deg"]]], 0)[0]
    if a.search:
        near = (np.abs(xs - x0) <= a.search) & (np.abs(ys - y0) <= a.search)
        elsewhere &= ~near
        masked = np.where(near, plane, -np.inf)
    else:
        masked = plane
    y, x = np.unravel_index(np.argmax(masked), plane.shape)
    flux = plane[y, x]
    pos_ok = abs(x - x0) <= a.tol + 1e-6 and abs(y - y0) <= a.tol + 1e-6  # WCS rounding
    flux_ok = abs(flux / s["flux_jy"] - 1) <= a.fluxtol
    ok &= pos_ok and flux_ok
    print("source at RA %.5f Dec %.5f: peak at pixel (%d, %d), want (%.2f, %.2f) %s; "
          "flux %.3f Jy, want %.3f (ratio %.3f) %s"
          % (s["ra_deg"], s["dec_deg"], x, y, x0, y0, "ok" if pos_ok else "WRONG",
             flux, s["flux_jy"], flux / s["flux_jy"], "ok" if flux_ok else "WRONG"))
if a.max_other > 0 and a.search:
    faintest = min(s["flux_jy"] for s in expected)
    other = plane[elsewhere].max()
    other_ok = other < a.max_other * faintest
    ok &= other_ok
    print("brightest pixel away from the sources: %.4f Jy/beam, want < %.4f (%.0f%% of the "
          "faintest source) %s" % (other, a.max_other * faintest, 100 * a.max_other,
                                   "ok" if other_ok else "WRONG"))
print("image check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
