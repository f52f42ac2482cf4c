cwlVersion: v1.2
class: CommandLineTool
label: "assert: each source's brightest pixel within a pixel of its true position, flux within 10%"
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-simulation:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - $(inputs.image.path)
  - $(inputs.truth.path)
  - {prefix: --report, valueFrom: check-image.txt}
inputs:
  script:
    type: File
    default: {class: File, location: ../../pipeline-common/check_image.py}
  image: File
  truth: File
  tol:
    type: float?
    doc: pixels (default 1)
    inputBinding: {prefix: --tol, position: 1}
  fluxtol:
    type: float?
    doc: fraction (default 0.10)
    inputBinding: {prefix: --fluxtol, position: 1}
  search:
    type: int?
    doc: search radius around each source in pixels (default 0, the whole image)
    inputBinding: {prefix: --search, position: 1}
  max_other:
    type: float?
    doc: with search, the brightest pixel away from every source under this fraction of the faintest
    inputBinding: {prefix: --max-other, position: 1}
outputs:
  report:
    type: File
    outputBinding: {glob: check-image.txt}
