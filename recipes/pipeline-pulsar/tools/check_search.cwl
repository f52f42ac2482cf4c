cwlVersion: v1.2
class: CommandLineTool
label: "assert: the best candidate a detection, its period within 0.1% of the truth, its DM within 3 pc/cm^3"
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - {prefix: --report, valueFrom: check-search.txt}
  - $(inputs.truth.path)
inputs:
  script:
    type: File
    default: {class: File, location: ../check_search.py}
  truth: File
  candidates:
    type: File[]
    doc: the accelsearch candidate lists (a trial that found nothing has none)
    inputBinding: {position: 10, prefix: --accel}
  infs:
    type: File[]
    doc: the .inf of every trial's spectrum (its DM, points and sampling time)
    inputBinding: {position: 9, prefix: --inf}
  ptol:
    type: float?
    doc: relative period tolerance (default 0.001)
    inputBinding: {prefix: --ptol, position: 1}
  dmtol:
    type: float?
    doc: DM tolerance (pc/cm^3, default 3)
    inputBinding: {prefix: --dmtol, position: 1}
  min_sigma:
    type: float?
    doc: the least sigma of the best candidate (default 8)
    inputBinding: {prefix: --min-sigma, position: 1}
outputs:
  report:
    type: File
    outputBinding: {glob: check-search.txt}
