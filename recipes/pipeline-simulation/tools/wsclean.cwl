cwlVersion: v1.2
class: CommandLineTool
label: image a Measurement Set with WSClean (Stokes I, cleaned, restored)
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-simulation:1
requirements:
  InitialWorkDirRequirement:
    # writable: casacore takes the table's lock file even to read it
    listing:
      - entry: $(inputs.ms)
        writable: true
baseCommand: wsclean
arguments:
  - {position: 1, prefix: -name, valueFrom: $(inputs.name)}
  - {position: 2, valueFrom: -size}
  - {position: 3, valueFrom: $(inputs.size)}
  - {position: 4, valueFrom: $(inputs.size)}
  - {position: 5, valueFrom: -weight}
  - {position: 6, valueFrom: briggs}
  - {position: 7, valueFrom: $(inputs.robust)}
  - {position: 8, valueFrom: -no-update-model-required}
  - {position: 20, valueFrom: $(inputs.ms.basename)}
inputs:
  ms: Directory
  name:
    type: string
    default: img
  size:
    type: int
    default: 128
    doc: pixels on a side
  robust:
    type: float
    default: 0
    doc: Briggs robustness
  scale:
    type: string
    default: 30asec
    inputBinding: {prefix: -scale, position: 10}
  niter:
    type: int
    default: 2000
    inputBinding: {prefix: -niter, position: 10}
  mgain:
    type: float
    default: 0.8
    inputBinding: {prefix: -mgain, position: 10}
  auto_threshold:
    type: float
    default: 3
    inputBinding: {prefix: -auto-threshold, position: 10}
stdout: wsclean.log
outputs:
  image:
    type: File
    outputBinding: {glob: $(inputs.name)-image.fits}
  dirty:
    type: File
    outputBinding: {glob: $(inputs.name)-dirty.fits}
  model:
    type: File?
    doc: none at niter 0
    outputBinding: {glob: $(inputs.name)-model.fits}
  residual:
    type: File?
    doc: none at niter 0
    outputBinding: {glob: $(inputs.name)-residual.fits}
  log:
    type: stdout
