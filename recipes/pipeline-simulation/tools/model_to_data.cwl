cwlVersion: v1.2
class: CommandLineTool
label: DATA = MODEL_DATA + thermal noise (python-casacore)
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-simulation:1
requirements:
  InitialWorkDirRequirement:
    listing:
      - entry: $(inputs.ms)
        writable: true
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - $(inputs.ms.basename)
inputs:
  script:
    type: File
    default: {class: File, location: ../model_to_data.py}
  ms: Directory
  noise:
    type: float?
    doc: Jy, each of real and imaginary, per visibility (default 0.5)
    inputBinding: {prefix: --noise, position: 1}
outputs:
  observed_ms:
    type: Directory
    outputBinding: {glob: $(inputs.ms.basename)}
