#!/usr/bin/env python3
"""Inject strong RFI into known time/channel cells of a Measurement Set.

Each cell given as 'TIME_INDEX,CHANNEL' (a range 'T0-T1,C' makes a burst of a
narrow-band transmitter) gets, on every baseline and in every correlation, a
visibility of amplitude AMP times a random factor in [0.5, 1.5] at a random
phase - terrestrial RFI as a strong, incoherent addition to the sky. The list
of injected cells goes to a JSON file for the flagging check.
"""
import argparse
import json

import numpy as np
import casacore.tables as ct


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("ms")
    p.add_argument("--cell", action="append", default=[], help="'T,C' or 'T0-T1,C'")
    p.add_argument("--amp", type=float, default=50.0, help="Jy")
    p.add_argument("--out", default="rfi.json")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)

    cells = []
    for spec in a.cell:
        t, c = spec.split(",")
        t0, _, t1 = t.partition("-")
        for ti in range(int(t0), int(t1 or t0) + 1):
            cells.append((ti, int(c)))

    ms = ct.table(a.ms, readonly=False, ack=False)
    times = np.unique(ms.getcol("TIME"))
    tindex = np.searchsorted(times, ms.getcol("TIME"))
    data = ms.getcol("DATA")
    nrow, nchan, ncorr = data.shape
    before = np.abs(data).mean()
    for ti, ch in cells:
        rows = np.nonzero(tindex == ti)[0]
        amp = a.amp * rng.uniform(0.5, 1.5, (len(rows), ncorr))
        phase = rng.uniform(0, 2 * np.pi, (len(rows), ncorr))
        data[rows, ch, :] += (amp * np.exp(1j * phase)).astype(data.dtype)
    ms.putcol("DATA", data)
    ms.close()

    with open(a.out, "w") as f:
        json.dump({"ntime": len(times), "nchan": nchan, "amp_jy": a.amp,
                   "cells": [list(c) for c in cells]}, f, indent=1)
    print("injected RFI of ~%.0f Jy into %d time/channel cells (x %d rows each, %d correlations); "
          "mean |V| %.2f -> %.2f Jy"
          % (a.amp, len(cells), nrow // len(times), ncorr, before, np.abs(data).mean()))


if __name__ == "__main__":
    main()
