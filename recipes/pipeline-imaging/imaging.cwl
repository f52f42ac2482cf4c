cwlVersion: v1.2
class: Workflow
label: imaging pipeline (prefactor-style) - simulate, flag, image, process solutions, check the science
doc: |
  The imaging pipeline of the EOSC LOFAR pilot, in miniature and on data of
  known truth:

    make_ms       python-casacore: a Measurement Set of a LOFAR-like array, DATA =
                  a point source off the phase centre plus noise (truth.json)
    inject_rfi    strong RFI into known time/channel cells (rfi.json)
    aoflagger     AOFlagger, its stock LOFAR strategy (or the strategy given)
    wsclean       WSClean, cleaned and restored
    make_h5parm   an H5parm of gain solutions: a known linear phase drift with
                  noise and an outlier, amplitudes with an outlier
    losoto        LoSoTo's SMOOTH (running median, phases) and CLIP (amplitudes)
    check_flags   assert: every injected cell flagged, under 5% of the clean ones
    check_image   assert: the brightest pixel within one pixel of the source's
                  true position (from the image's FITS WCS), flux within 10%
    check_losoto  assert: smoothed phases near the truth, exactly the outlier clipped

  Each check prints what it measured and exits 1 when the science is wrong.
requirements:
  MultipleInputFeatureRequirement: {}   # the logs output gathers three steps' logs

inputs:
  sources:
    type: string[]
    doc: "'DL_ARCSEC,DM_ARCSEC,FLUX_JY' each: a point source east and north of the phase centre"
  expect:
    type: string[]?
    doc: "where check_image is to find the sources, as sources; default: where they were put"
  noise: float
  rfi_cells:
    type: string[]
    doc: "'TIME_INDEX,CHANNEL' or 'T0-T1,CHANNEL' each"
  rfi_amp: float
  strategy: File?
  image_size: int
  image_scale: string
  niter: int
  parset: File

outputs:
  image:
    type: File
    outputSource: wsclean/image
  model:
    type: File
    outputSource: wsclean/model
  flag_report:
    type: File
    outputSource: check_flags/report
  image_report:
    type: File
    outputSource: check_image/report
  losoto_report:
    type: File
    outputSource: check_losoto/report
  h5parm:
    type: File
    outputSource: losoto/h5parm_out
  logs:
    type: File[]
    outputSource: [aoflagger/log, wsclean/log, losoto/log]
    linkMerge: merge_flattened

steps:
  make_ms:
    run: tools/make_ms.cwl
    in:
      sources: sources
      expect: expect
      noise: noise
    out: [ms, truth]

  inject_rfi:
    run: tools/inject_rfi.cwl
    in:
      ms: make_ms/ms
      cells: rfi_cells
      amp: rfi_amp
    out: [ms_rfi, rfi]

  aoflagger:
    run: tools/aoflagger.cwl
    in:
      ms: inject_rfi/ms_rfi
      strategy: strategy
    out: [flagged_ms, log]

  wsclean:
    run: tools/wsclean.cwl
    in:
      ms: aoflagger/flagged_ms
      size: image_size
      scale: image_scale
      niter: niter
    out: [image, model, residual, log]

  make_h5parm:
    run: tools/make_h5parm.cwl
    in: {}
    out: [h5parm, truth]

  losoto:
    run: tools/losoto.cwl
    in:
      h5parm: make_h5parm/h5parm
      parset: parset
    out: [h5parm_out, log]

  check_flags:
    run: tools/check_flags.cwl
    in:
      ms: aoflagger/flagged_ms
      rfi: inject_rfi/rfi
    out: [report]

  check_image:
    run: tools/check_image.cwl
    in:
      image: wsclean/image
      truth: make_ms/truth
    out: [report]

  check_losoto:
    run: tools/check_h5parm.cwl
    in:
      h5parm: losoto/h5parm_out
      truth: make_h5parm/truth
    out: [report]
