cwlVersion: v1.2
class: CommandLineTool
label: write a gain-solution H5parm of known truth (phase drift, amplitudes, outliers)
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-imaging:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - {prefix: --out, valueFrom: gains.h5}
  - {prefix: --truth, valueFrom: gains-truth.npz}
inputs:
  script:
    type: File
    default: {class: File, location: ../make_h5parm.py}
  phase_noise:
    type: float?
    doc: rad
    inputBinding: {prefix: --phase-noise, position: 1}
outputs:
  h5parm:
    type: File
    outputBinding: {glob: gains.h5}
  truth:
    type: File
    outputBinding: {glob: gains-truth.npz}
