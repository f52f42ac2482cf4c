#!/usr/bin/env python3
"""Write a sky model image of point sources, as WSClean's -predict reads it.

Takes a WSClean image of the Measurement Set (its dirty image at -niter 0: the
grid, projection and phase centre WSClean will predict on) as the template
and writes <NAME>-model.fits: zero but for each source's flux (Jy) in its
pixel. Each source's RA and Dec, from the template's FITS WCS, go with its
flux to truth.json, for the check of the image made back from the predicted
visibilities.
"""
import argparse
import json
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

warnings.simplefilter("ignore", FITSFixedWarning)

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("template")
p.add_argument("--name", default="sky")
p.add_argument("--source", action="append", required=True,
               help="'X,Y,FLUX_JY': a point source at pixel (X, Y), 0-based (as numpy "
                    "indexes the image's last two axes: east is to the left, lower X)")
p.add_argument("--truth", default="truth.json")
a = p.parse_args()

with fits.open(a.template) as hdul:
    hdr = hdul[0].header.copy()
    data = np.zeros_like(hdul[0].data, dtype=np.float32)
wcs = WCS(hdr).celestial
ny, nx = data.shape[-2:]
sources = []
for spec in a.source:
    x, y, flux = spec.split(",")
    x, y, flux = int(x), int(y), float(flux)
    if not (0 <= x < nx and 0 <= y < ny):
        raise SystemExit("source pixel (%d, %d) outside the %d x %d image" % (x, y, nx, ny))
    data[..., y, x] += flux
    ra, dec = wcs.all_pix2world([[x, y]], 0)[0]
    sources.append({"x": x, "y": y, "ra_deg": float(ra), "dec_deg": float(dec), "flux_jy": flux})
    print("model source: %.3f Jy at pixel (%d, %d): RA %.5f, Dec %.5f" % (flux, x, y, ra, dec))
hdr["BUNIT"] = "JY/PIXEL"
fits.PrimaryHDU(data, hdr).writeto(a.name + "-model.fits", overwrite=True)
with open(a.truth, "w") as f:
    json.dump({"model": a.name + "-model.fits", "sources": sources}, f, indent=1)
print("%s-model.fits: %d sources, %.3f Jy in all" % (a.name, len(sources), data.sum()))
