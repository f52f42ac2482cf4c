cwlVersion: v1.2
class: CommandLineTool
label: search a Fourier spectrum for periodic signals (PRESTO accelsearch)
doc: |
  -zmax 0: no acceleration search (an isolated pulsar); harmonics summed up
  to numharm. The candidate list <base>_ACCEL_0 is the output (none when
  accelsearch finds nothing above sigma), with the spectrum's .inf (its DM,
  number of points and sampling time) beside it.
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
requirements:
  InitialWorkDirRequirement:
    # accelsearch writes its candidates beside the .fft and reads the .inf there
    listing:
      - $(inputs.spectrum)
baseCommand: accelsearch
arguments:
  - {position: 10, valueFrom: $(inputs.spectrum.basename)}
inputs:
  spectrum:
    type: File
    secondaryFiles: [^.inf]
  zmax:
    type: int
    default: 0
    inputBinding: {prefix: -zmax, position: 1}
  numharm:
    type: int
    default: 8
    inputBinding: {prefix: -numharm, position: 1}
  sigma:
    type: float
    default: 2.0
    doc: the smallest candidate sigma listed
    inputBinding: {prefix: -sigma, position: 1}
stdout: $(inputs.spectrum.nameroot).accelsearch.log
outputs:
  candidates:
    type: File?
    outputBinding: {glob: "$(inputs.spectrum.nameroot)_ACCEL_0"}
  inf:
    type: File
    outputBinding: {glob: "$(inputs.spectrum.nameroot).inf"}
