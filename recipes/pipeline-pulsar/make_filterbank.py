#!/usr/bin/env python3
"""Synthesise a SIGPROC filterbank holding a dispersed periodic pulse in noise.

NCHAN channels from FTOP MHz down (foff < 0, as SIGPROC and PRESTO expect the
first channel highest), 8-bit samples of Gaussian noise (mean 96, sigma 12).
A pulsar of period P and dispersion measure DM adds, in channel i at time t,

    A * sigma * exp(-phase^2 / (2 w^2)),   phase = frac((t - delay_i) / P + 1/2) - 1/2,
    delay_i = 4148.808 s * DM * (f_i^-2 - f_top^-2)          (f in MHz),

a Gaussian pulse of width w (in turns) arriving later at lower frequencies,
as the cold plasma between the pulsar and us delays it. A is well below the
noise in each sample and channel: only folding many dedispersed pulses finds
it. The truth goes to a JSON file for the check.
"""
import argparse
import json
import struct

import numpy as np

KDM = 4148.808  # s MHz^2 cm^3 / pc


def hstr(s):
    b = s.encode()
    return struct.pack("<i", len(b)) + b


def hint(name, v):
    return hstr(name) + struct.pack("<i", v)


def hdbl(name, v):
    return hstr(name) + struct.pack("<d", v)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="psr.fil")
    p.add_argument("--truth", default="truth.json")
    p.add_argument("--period", type=float, default=0.2345, help="s")
    p.add_argument("--dm", type=float, default=42.3, help="pc/cm^3")
    p.add_argument("--width", type=float, default=0.02, help="pulse sigma, turns")
    p.add_argument("--amp", type=float, default=0.08, help="per-sample amplitude / noise sigma")
    p.add_argument("--nchan", type=int, default=64)
    p.add_argument("--ftop", type=float, default=450.0, help="top edge of the band, MHz")
    p.add_argument("--bw", type=float, default=100.0, help="MHz")
    p.add_argument("--tsamp", type=float, default=256e-6, help="s")
    p.add_argument("--nsamp", type=int, default=131072)
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)

    foff = -a.bw / a.nchan
    freqs = a.ftop + foff / 2 + foff * np.arange(a.nchan)      # channel centres, high first
    delay = KDM * a.dm * (freqs ** -2.0 - freqs[0] ** -2.0)
    t = a.tsamp * np.arange(a.nsamp)

    mean, sigma = 96.0, 12.0
    data = rng.normal(mean, sigma, (a.nsamp, a.nchan)).astype(np.float32)
    for i in range(a.nchan):
        phase = (t - delay[i]) / a.period
        phase = phase - np.floor(phase + 0.5)
        data[:, i] += a.amp * sigma * np.exp(-0.5 * (phase / a.width) ** 2)
    data = np.clip(np.rint(data), 0, 255).astype(np.uint8)

    header = (hstr("HEADER_START")
              + hstr("rawdatafile") + hstr(a.out)
              + hstr("source_name") + hstr("FAKE_PSR")
              + hint("machine_id", 10) + hint("telescope_id", 0) + hint("data_type", 1)
              + hdbl("src_raj", 123456.0) + hdbl("src_dej", 451234.0)
              + hdbl("az_start", 0.0) + hdbl("za_start", 0.0)
              + hdbl("tstart", 59000.5) + hdbl("tsamp", a.tsamp)
              + hint("nbits", 8) + hdbl("fch1", float(freqs[0])) + hdbl("foff", foff)
              + hint("nchans", a.nchan) + hint("nifs", 1) + hint("barycentric", 0)
              + hstr("HEADER_END"))
    with open(a.out, "wb") as f:
        f.write(header)
        f.write(data.tobytes())

    truth = {"period_s": a.period, "freq_hz": 1 / a.period, "dm": a.dm,
             "width_turns": a.width, "amp_sigma": a.amp, "nchan": a.nchan,
             "fch1_mhz": float(freqs[0]), "foff_mhz": foff, "tsamp_s": a.tsamp,
             "nsamp": a.nsamp, "tobs_s": a.nsamp * a.tsamp,
             "band_delay_s": float(delay[-1])}
    with open(a.truth, "w") as f:
        json.dump(truth, f, indent=1)
    print("%s: %d channels %.2f..%.2f MHz, %d samples of %.0f us (%.1f s); pulsar P = %.6f s, "
          "DM = %.2f pc/cm^3 (delay across the band %.3f s = %.1f periods), amplitude %.2f sigma"
          % (a.out, a.nchan, freqs[0], freqs[-1], a.nsamp, a.tsamp * 1e6, a.nsamp * a.tsamp,
             a.period, a.dm, delay[-1], delay[-1] / a.period, a.amp))


if __name__ == "__main__":
    main()
