cwlVersion: v1.2
class: CommandLineTool
label: dedisperse a filterbank at a regular grid of trial DMs (PRESTO prepsubband)
doc: |
  One time series (.dat, with its .inf) per trial DM: lodm, lodm + dmstep, ...
  Topocentric (-nobary: the fake source has no real position), no clipping.
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
baseCommand: prepsubband
arguments:
  - -nobary
  - -noclip
  - {prefix: -o, valueFrom: $(inputs.basename)}
  - {position: 10, valueFrom: $(inputs.filterbank.path)}
inputs:
  filterbank: File
  basename:
    type: string
    default: psr
  lodm:
    type: float
    inputBinding: {prefix: -lodm, position: 1}
  dmstep:
    type: float
    inputBinding: {prefix: -dmstep, position: 1}
  numdms:
    type: int
    inputBinding: {prefix: -numdms, position: 1}
  nsub:
    type: int
    default: 64
    doc: subbands (as many as channels, no subband smearing)
    inputBinding: {prefix: -nsub, position: 1}
  numout:
    type: int?
    doc: points in each output series (even, for realfft)
    inputBinding: {prefix: -numout, position: 1}
stdout: prepsubband.log
outputs:
  series:
    type: File[]
    outputBinding: {glob: "$(inputs.basename)_DM*.dat"}
    secondaryFiles: [^.inf]
  log:
    type: stdout
