cwlVersion: v1.2
class: Workflow
label: time-domain pipeline (the PRESTO tutorial) - simulate a pulsar, dedisperse, search, check the science
doc: |
  The time-domain pipeline of the EOSC LOFAR pilot, in miniature and on data
  of known truth:

    make_filterbank  a SIGPROC filterbank (8-bit, 64 channels, 350-450 MHz, 256 us)
                     with a dispersed pulsar of known period and DM in Gaussian noise
    prepsubband      dedispersion at a regular grid of trial DMs
    realfft          the Fourier transform of each dedispersed time series
    rednoise         each spectrum whitened (red noise and DC leakage removed)
    accelsearch      a harmonic-summing search of each spectrum (-zmax 0), one
                     job per trial DM (scattered)
    check_search     assert: the best candidate (highest sigma over all DMs) has
                     the true period within 0.1% and a DM within 3 pc/cm^3 of the truth

  The check prints every trial DM's best sigma and exits 1 when the science is wrong.
requirements:
  ScatterFeatureRequirement: {}

inputs:
  period: float
  dm: float
  amp: float
  lodm: float
  dmstep: float
  numdms: int
  numout: int

outputs:
  candidates:
    type: File[]
    outputSource: accelsearch/candidates
    pickValue: all_non_null
  search_report:
    type: File
    outputSource: check_search/report
  truth:
    type: File
    outputSource: make_filterbank/truth

steps:
  make_filterbank:
    run: tools/make_filterbank.cwl
    in:
      period: period
      dm: dm
      amp: amp
    out: [filterbank, truth]

  prepsubband:
    run: tools/prepsubband.cwl
    in:
      filterbank: make_filterbank/filterbank
      lodm: lodm
      dmstep: dmstep
      numdms: numdms
      numout: numout
    out: [series, log]

  realfft:
    run: tools/realfft.cwl
    in:
      series: prepsubband/series
    out: [spectra, log]

  rednoise:
    run: tools/rednoise.cwl
    scatter: spectrum
    in:
      spectrum: realfft/spectra
    out: [whitened]

  accelsearch:
    run: tools/accelsearch.cwl
    scatter: spectrum
    in:
      spectrum: rednoise/whitened
    out: [candidates, inf]

  check_search:
    run: tools/check_search.cwl
    in:
      truth: make_filterbank/truth
      candidates:
        source: accelsearch/candidates
        pickValue: all_non_null
      infs: accelsearch/inf
    out: [report]
