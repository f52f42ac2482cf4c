#!/usr/bin/env python3
"""Synthesise a tiny LOFAR-like Measurement Set holding point sources.

The array: NANT stations scattered (a fixed random seed) within a few km of
the LOFAR core, tracking a field at Dec +48 for four hours; NCHAN channels
near 150 MHz. UVW come from the array geometry and the hour angle (Thompson,
Moran & Swenson, eq. 4.1; baseline = ANTENNA2 - ANTENNA1, as casacore
computes them); the DATA of each source of flux S at direction
cosines (l, m) are, in XX and YY (an unpolarised source: I = (XX + YY) / 2),

    V = S exp(+2 pi i (u l + v m + w (n - 1)))      (u, v, w in wavelengths)

- the RIME's exp(-2 pi i ...) with the baseline taken the other way, antenna 1
minus antenna 2: with casacore's UVW this is the sign WSClean's own -predict
writes, and the one its imager puts at +l (east, to the left) - plus Gaussian
noise in all four correlations. The truth (phase centre, each
source's l, m, RA, Dec, flux; the shape of the data) goes to a JSON file for
the checks that follow.
"""
import argparse
import json
import math
import os

import numpy as np
import casacore.tables as ct

C = 299792458.0
LOFAR_LAT = math.radians(52.915)
LOFAR_LON = math.radians(6.870)
ARCSEC = math.pi / (180 * 3600)


def enu_to_itrf(enu, lat, lon, height=50.0):
    """ITRF positions of stations at local east/north/up offsets (WGS84)."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    nrad = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    ref = np.array([(nrad + height) * math.cos(lat) * math.cos(lon),
                    (nrad + height) * math.cos(lat) * math.sin(lon),
                    (nrad * (1 - e2) + height) * math.sin(lat)])
    sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
    rot = np.array([[-so, -sl * co, cl * co],
                    [co, -sl * so, cl * so],
                    [0.0, cl, sl]])
    return ref + enu @ rot.T


def gmst_rad(mjd_seconds):
    """Greenwich mean sidereal time (IAU 1982, good to a second here)."""
    jd = mjd_seconds / 86400.0 + 2400000.5
    deg = 280.46061837 + 360.98564736629 * (jd - 2451545.0)
    return math.radians(deg % 360.0)


def point_source(spec, ra0, dec0):
    """'DL_ARCSEC,DM_ARCSEC,FLUX_JY' as the truth holds a source: its direction cosines
    (l, m) and its RA and Dec (degrees) from the phase centre (ra0, dec0, radians)."""
    dl, dm, flux = (float(x) for x in spec.split(","))
    l, m = dl * ARCSEC, dm * ARCSEC
    nn = math.sqrt(1 - l * l - m * m)
    dec = math.asin(m * math.cos(dec0) + nn * math.sin(dec0))
    ra = ra0 + math.atan2(l, nn * math.cos(dec0) - m * math.sin(dec0))
    return {"dl_arcsec": dl, "dm_arcsec": dm, "l": l, "m": m,
            "ra_deg": math.degrees(ra) % 360.0, "dec_deg": math.degrees(dec), "flux_jy": flux}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="sim.ms")
    p.add_argument("--truth", default="truth.json")
    p.add_argument("--nant", type=int, default=14)
    p.add_argument("--nchan", type=int, default=32)
    p.add_argument("--ntime", type=int, default=60)
    p.add_argument("--freq0", type=float, default=140e6, help="first channel (Hz)")
    p.add_argument("--chanwidth", type=float, default=0.5e6, help="Hz")
    p.add_argument("--hours", type=float, default=4.0, help="track length, centred on transit")
    p.add_argument("--ra", type=float, default=123.4, help="phase centre RA (deg)")
    p.add_argument("--dec", type=float, default=48.0, help="phase centre Dec (deg)")
    p.add_argument("--source", action="append", default=[],
                   help="'DL_ARCSEC,DM_ARCSEC,FLUX_JY': a point source at direction cosines "
                        "l = DL, m = DM (east and north of the phase centre)")
    p.add_argument("--expect", action="append", default=[],
                   help="'DL_ARCSEC,DM_ARCSEC,FLUX_JY': where the checks are to find a source "
                        "(the truth's 'expected'); default: every --source, where it was put")
    p.add_argument("--noise", type=float, default=0.5,
                   help="noise sigma of each real and imaginary part (Jy)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--project", default="kernbuild pipelines")
    a = p.parse_args()

    rng = np.random.default_rng(a.seed)
    ra0, dec0 = math.radians(a.ra), math.radians(a.dec)

    # Stations: a dense core and a sparser ring, within 2.5 km.
    radius = np.concatenate([rng.uniform(50, 600, a.nant // 2),
                             rng.uniform(600, 2500, a.nant - a.nant // 2)])
    theta = rng.uniform(0, 2 * math.pi, a.nant)
    enu = np.stack([radius * np.cos(theta), radius * np.sin(theta),
                    rng.uniform(-2, 2, a.nant)], axis=1)
    itrf = enu_to_itrf(enu, LOFAR_LAT, LOFAR_LON)
    # Equatorial components (X to the local meridian at the equator, Y east, Z pole).
    e, n, u = enu.T
    xyz = np.stack([-math.sin(LOFAR_LAT) * n + math.cos(LOFAR_LAT) * u,
                    e,
                    math.cos(LOFAR_LAT) * n + math.sin(LOFAR_LAT) * u], axis=1)

    # Times: centred on the field's transit on MJD 59000.
    day0 = 59000 * 86400.0
    lst0 = (gmst_rad(day0) + LOFAR_LON) % (2 * math.pi)
    sidereal = 86164.0905
    t_transit = day0 + ((ra0 - lst0) % (2 * math.pi)) / (2 * math.pi) * sidereal
    interval = a.hours * 3600.0 / a.ntime
    times = t_transit + (np.arange(a.ntime) - (a.ntime - 1) / 2.0) * interval

    freqs = a.freq0 + a.chanwidth * np.arange(a.nchan)
    ant1, ant2 = np.triu_indices(a.nant, 1)
    nbl = len(ant1)
    nrow = nbl * a.ntime

    # Per-station uvw (metres) at each time, baseline uvw = station 2 - station 1 (as
    # casacore's derived UVW_J2000 column computes them from the ANTENNA positions).
    uvw = np.zeros((a.ntime, nbl, 3))
    for it, t in enumerate(times):
        h = (gmst_rad(t) + LOFAR_LON) - ra0
        sh, chh, sd, cd = math.sin(h), math.cos(h), math.sin(dec0), math.cos(dec0)
        rot = np.array([[sh, chh, 0.0],
                        [-sd * chh, sd * sh, cd],
                        [cd * chh, -cd * sh, sd]])
        st = xyz @ rot.T
        uvw[it] = st[ant2] - st[ant1]
    uvw = uvw.reshape(nrow, 3)

    # Visibilities.
    lam = C / freqs
    data = np.zeros((nrow, a.nchan, 4), dtype=np.complex64)
    sources = []
    for spec in a.source:
        s = point_source(spec, ra0, dec0)
        l, m, nn, flux = s["l"], s["m"], math.sqrt(1 - s["l"] ** 2 - s["m"] ** 2), s["flux_jy"]
        phase = 2j * math.pi * (uvw[:, 0:1] * l + uvw[:, 1:2] * m
                                 + uvw[:, 2:3] * (nn - 1)) / lam[None, :]
        vis = flux * np.exp(phase)
        data[:, :, 0] += vis
        data[:, :, 3] += vis
        sources.append(s)
    if a.noise > 0:
        data += (a.noise * (rng.standard_normal(data.shape)
                            + 1j * rng.standard_normal(data.shape))).astype(np.complex64)

    # The Measurement Set: default columns and subtables, DATA and FLAG of fixed shape.
    shape = [a.nchan, 4]
    desc = ct.maketabdesc([
        ct.makearrcoldesc("DATA", 0j, shape=shape, valuetype="complex",
                          keywords={"UNIT": "Jy"}),
        ct.makearrcoldesc("FLAG", False, shape=shape, valuetype="boolean"),
        ct.makearrcoldesc("WEIGHT", 1.0, shape=[4], valuetype="float"),
        ct.makearrcoldesc("SIGMA", 1.0, shape=[4], valuetype="float"),
    ])
    ms = ct.default_ms(a.out, desc)
    ms.addrows(nrow)
    rows_time = np.repeat(times, nbl)
    ms.putcol("TIME", rows_time)
    ms.putcol("TIME_CENTROID", rows_time)
    ms.putcol("INTERVAL", np.full(nrow, interval))
    ms.putcol("EXPOSURE", np.full(nrow, interval))
    ms.putcol("ANTENNA1", np.tile(ant1, a.ntime).astype(np.int32))
    ms.putcol("ANTENNA2", np.tile(ant2, a.ntime).astype(np.int32))
    for col in ("FEED1", "FEED2", "DATA_DESC_ID", "FIELD_ID", "ARRAY_ID",
                "OBSERVATION_ID", "PROCESSOR_ID", "SCAN_NUMBER", "STATE_ID"):
        ms.putcol(col, np.zeros(nrow, dtype=np.int32))
    ms.putcol("FLAG_ROW", np.zeros(nrow, dtype=bool))
    ms.putcol("UVW", uvw)
    ms.putcol("DATA", data)
    ms.putcol("FLAG", np.zeros((nrow, a.nchan, 4), dtype=bool))
    ms.putcol("WEIGHT", np.ones((nrow, 4), dtype=np.float32))
    ms.putcol("SIGMA", np.ones((nrow, 4), dtype=np.float32))

    sub = lambda name: ct.table(os.path.join(a.out, name), readonly=False, ack=False)

    t = sub("ANTENNA")
    t.addrows(a.nant)
    t.putcol("NAME", ["CS%03d" % (i + 1) for i in range(a.nant)])
    t.putcol("STATION", ["LOFAR"] * a.nant)
    t.putcol("TYPE", ["GROUND-BASED"] * a.nant)
    t.putcol("MOUNT", ["X-Y"] * a.nant)
    t.putcol("POSITION", itrf)
    t.putcol("OFFSET", np.zeros((a.nant, 3)))
    t.putcol("DISH_DIAMETER", np.full(a.nant, 30.0))
    t.putcol("FLAG_ROW", np.zeros(a.nant, dtype=bool))
    t.close()

    t = sub("SPECTRAL_WINDOW")
    t.addrows(1)
    t.putcell("NUM_CHAN", 0, a.nchan)
    t.putcell("NAME", 0, "SB-0")
    t.putcell("CHAN_FREQ", 0, freqs)
    for col in ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
        t.putcell(col, 0, np.full(a.nchan, a.chanwidth))
    t.putcell("REF_FREQUENCY", 0, float(freqs.mean()))
    t.putcell("TOTAL_BANDWIDTH", 0, a.nchan * a.chanwidth)
    t.putcell("MEAS_FREQ_REF", 0, 5)  # TOPO
    t.putcell("NET_SIDEBAND", 0, 1)
    t.putcell("FLAG_ROW", 0, False)
    t.close()

    t = sub("POLARIZATION")
    t.addrows(1)
    t.putcell("NUM_CORR", 0, 4)
    t.putcell("CORR_TYPE", 0, np.array([9, 10, 11, 12], dtype=np.int32))  # XX XY YX YY
    t.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.int32))
    t.putcell("FLAG_ROW", 0, False)
    t.close()

    t = sub("DATA_DESCRIPTION")
    t.addrows(1)
    t.putcell("SPECTRAL_WINDOW_ID", 0, 0)
    t.putcell("POLARIZATION_ID", 0, 0)
    t.putcell("FLAG_ROW", 0, False)
    t.close()

    t = sub("FIELD")
    t.addrows(1)
    t.putcell("NAME", 0, "SIMFIELD")
    t.putcell("CODE", 0, "")
    t.putcell("NUM_POLY", 0, 0)
    t.putcell("TIME", 0, float(times[0]))
    direction = np.array([[ra0, dec0]])
    for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
        t.putcell(col, 0, direction)
    t.putcell("SOURCE_ID", 0, -1)
    t.putcell("FLAG_ROW", 0, False)
    t.close()

    t = sub("OBSERVATION")
    t.addrows(1)
    t.putcell("TELESCOPE_NAME", 0, "LOFAR")
    t.putcell("OBSERVER", 0, "kernbuild")
    t.putcell("PROJECT", 0, a.project)
    t.putcell("TIME_RANGE", 0, np.array([times[0] - interval / 2, times[-1] + interval / 2]))
    t.putcell("RELEASE_DATE", 0, float(times[-1]))
    t.putcell("FLAG_ROW", 0, False)
    t.close()

    t = sub("FEED")
    t.addrows(a.nant)
    t.putcol("ANTENNA_ID", np.arange(a.nant, dtype=np.int32))
    t.putcol("FEED_ID", np.zeros(a.nant, dtype=np.int32))
    t.putcol("SPECTRAL_WINDOW_ID", np.full(a.nant, -1, dtype=np.int32))
    t.putcol("TIME", np.full(a.nant, float(times[0])))
    t.putcol("INTERVAL", np.full(a.nant, a.hours * 3600.0))
    t.putcol("NUM_RECEPTORS", np.full(a.nant, 2, dtype=np.int32))
    t.putcol("BEAM_ID", np.full(a.nant, -1, dtype=np.int32))
    t.putcol("BEAM_OFFSET", np.zeros((a.nant, 2, 2)))
    t.putcol("POLARIZATION_TYPE", np.array([["X", "Y"]] * a.nant))
    t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (a.nant, 1, 1)))
    t.putcol("POSITION", np.zeros((a.nant, 3)))
    t.putcol("RECEPTOR_ANGLE", np.tile([0.0, math.pi / 2], (a.nant, 1)))
    t.close()

    ms.close()

    longest = float(np.max(np.linalg.norm(uvw[:, :2], axis=1)) / lam.min())
    truth = {"ms": os.path.basename(a.out), "ra0_deg": a.ra, "dec0_deg": a.dec,
             "nant": a.nant, "nbaseline": nbl, "ntime": a.ntime, "nchan": a.nchan,
             "freq_hz": [float(freqs[0]), float(freqs[-1])], "noise_jy": a.noise,
             "longest_baseline_wavelengths": longest,
             "resolution_arcsec": math.degrees(1.0 / longest) * 3600,
             "sources": sources,
             # What the checks look for: a job may say it apart from what was put in, and
             # a wrong expectation must then fail them (the pipeline's own negative test).
             "expected": [point_source(spec, ra0, dec0) for spec in a.expect] or sources}
    with open(a.truth, "w") as f:
        json.dump(truth, f, indent=1)
    print("%s: %d stations, %d baselines, %d times, %d channels %.1f-%.1f MHz, "
          "longest baseline %.0f wavelengths (resolution ~%.0f arcsec)"
          % (a.out, a.nant, nbl, a.ntime, a.nchan, freqs[0] / 1e6, freqs[-1] / 1e6,
             longest, truth["resolution_arcsec"]))
    for s in sources:
        print("source: %.3f Jy at l = %+.0f\", m = %+.0f\" (RA %.5f, Dec %.5f)"
              % (s["flux_jy"], s["dl_arcsec"], s["dm_arcsec"], s["ra_deg"], s["dec_deg"]))


if __name__ == "__main__":
    main()
