cwlVersion: v1.2
class: CommandLineTool
label: synthesise a SIGPROC filterbank with a dispersed periodic pulse in Gaussian noise
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - {prefix: --out, valueFrom: psr.fil}
  - {prefix: --truth, valueFrom: truth.json}
inputs:
  script:
    type: File
    default: {class: File, location: ../make_filterbank.py}
  period:
    type: float
    doc: s
    inputBinding: {prefix: --period, position: 1}
  dm:
    type: float
    doc: pc/cm^3
    inputBinding: {prefix: --dm, position: 1}
  amp:
    type: float?
    doc: pulse amplitude per sample and channel, in noise sigmas
    inputBinding: {prefix: --amp, position: 1}
  nchan:
    type: int?
    inputBinding: {prefix: --nchan, position: 1}
  nsamp:
    type: int?
    inputBinding: {prefix: --nsamp, position: 1}
outputs:
  filterbank:
    type: File
    outputBinding: {glob: psr.fil}
  truth:
    type: File
    outputBinding: {glob: truth.json}
