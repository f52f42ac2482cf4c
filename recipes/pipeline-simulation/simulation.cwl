cwlVersion: v1.2
class: Workflow
label: simulation pipeline (Spiel-style) - predict a sky model, image it back, check the science
doc: |
  The simulation pipeline of the EOSC LOFAR pilot, in miniature:

    make_ms        python-casacore: an empty Measurement Set of a LOFAR-like array
    template       WSClean at -niter 0: the image grid, projection and phase centre
    make_model     the sky model: point sources of known flux in known pixels of that
                   grid, as <name>-model.fits (truth.json: their RA, Dec, flux)
    predict        wsclean -predict: the model's visibilities into MODEL_DATA
    model_to_data  DATA = MODEL_DATA + thermal noise
    wsclean        WSClean, cleaned and restored
    check_image    assert: every model source's brightest pixel within one pixel of
                   its position, its flux within 10%, nothing else above 10% of the
                   faintest source

  The check prints what it measured and exits 1 when the science is wrong.

inputs:
  sources:
    type: string[]
    doc: "'X,Y,FLUX_JY' each: a point source in pixel (X, Y) of the image grid, 0-based"
  noise: float
  image_size: int
  image_scale: string
  niter: int
  auto_threshold: float

outputs:
  image:
    type: File
    outputSource: wsclean/image
  model:
    type: File
    outputSource: make_model/model
  truth:
    type: File
    outputSource: make_model/truth
  image_report:
    type: File
    outputSource: check_image/report

steps:
  make_ms:
    run: tools/make_ms.cwl
    in:
      noise: {default: 0.0}
    out: [ms, truth]

  template:
    run: tools/wsclean.cwl
    in:
      ms: make_ms/ms
      name: {default: template}
      size: image_size
      scale: image_scale
      niter: {default: 0}
    out: [image]

  make_model:
    run: tools/make_model.cwl
    in:
      template: template/image
      sources: sources
    out: [model, truth]

  predict:
    run: tools/wsclean_predict.cwl
    in:
      ms: make_ms/ms
      model: make_model/model
      size: image_size
      scale: image_scale
    out: [predicted_ms, log]

  model_to_data:
    run: tools/model_to_data.cwl
    in:
      ms: predict/predicted_ms
      noise: noise
    out: [observed_ms]

  wsclean:
    run: tools/wsclean.cwl
    in:
      ms: model_to_data/observed_ms
      size: image_size
      scale: image_scale
      niter: niter
      auto_threshold: auto_threshold
    out: [image, log]

  check_image:
    run: tools/check_image.cwl
    in:
      image: wsclean/image
      truth: make_model/truth
      search: {default: 5}
      max_other: {default: 0.1}
    out: [report]
