cwlVersion: v1.2
class: CommandLineTool
label: "assert: LoSoTo smoothed the phases to their truth and clipped exactly the amplitude outlier"
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-imaging:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - $(inputs.h5parm.path)
  - $(inputs.truth.path)
  - {prefix: --report, valueFrom: check-losoto.txt}
inputs:
  script:
    type: File
    default: {class: File, location: ../check_h5parm.py}
  h5parm: File
  truth: File
  maxerr:
    type: float?
    doc: largest error of a smoothed phase (rad; default 0.3)
    inputBinding: {prefix: --maxerr, position: 1}
outputs:
  report:
    type: File
    outputBinding: {glob: check-losoto.txt}
