cwlVersion: v1.2
class: CommandLineTool
label: synthesise a tiny LOFAR-like Measurement Set holding point sources
doc: |
  python-casacore: a default MS with its subtables filled (ANTENNA, FIELD,
  SPECTRAL_WINDOW, POLARIZATION, ...), UVW from the array geometry and the hour
  angle, DATA = the given point sources plus Gaussian noise. truth.json holds
  every source's RA, Dec and flux, and where the checks are to find them.
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-imaging:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - {prefix: --out, valueFrom: $(inputs.ms_name)}
  - {prefix: --truth, valueFrom: truth.json}
inputs:
  script:
    type: File
    default: {class: File, location: ../../pipeline-common/make_ms.py}
  ms_name:
    type: string
    default: sim.ms
  sources:
    type:
      type: array
      items: string
      inputBinding: {prefix: --source}
    doc: "'DL_ARCSEC,DM_ARCSEC,FLUX_JY' each: east and north of the phase centre"
    inputBinding: {position: 1}
  expect:
    type:
      - "null"
      - type: array
        items: string
        inputBinding: {prefix: --expect}
    doc: "where the checks are to find the sources, as sources; default: where they were put"
    inputBinding: {position: 1}
  noise:
    type: float?
    doc: noise sigma of each real and imaginary part (Jy)
    inputBinding: {prefix: --noise, position: 1}
  nchan:
    type: int?
    inputBinding: {prefix: --nchan, position: 1}
  ntime:
    type: int?
    inputBinding: {prefix: --ntime, position: 1}
  nant:
    type: int?
    inputBinding: {prefix: --nant, position: 1}
outputs:
  ms:
    type: Directory
    outputBinding: {glob: $(inputs.ms_name)}
  truth:
    type: File
    outputBinding: {glob: truth.json}
