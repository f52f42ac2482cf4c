cwlVersion: v1.2
class: CommandLineTool
label: inject strong RFI into known time/channel cells of a Measurement Set
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-imaging:1
requirements:
  InitialWorkDirRequirement:
    listing:
      - entry: $(inputs.ms)
        writable: true
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - $(inputs.ms.basename)
  - {prefix: --out, valueFrom: rfi.json}
inputs:
  script:
    type: File
    default: {class: File, location: ../inject_rfi.py}
  ms: Directory
  cells:
    type:
      type: array
      items: string
      inputBinding: {prefix: --cell}
    doc: "'TIME_INDEX,CHANNEL' or 'T0-T1,CHANNEL' each"
    inputBinding: {position: 1}
  amp:
    type: float?
    doc: RFI amplitude (Jy)
    inputBinding: {prefix: --amp, position: 1}
outputs:
  ms_rfi:
    type: Directory
    outputBinding: {glob: $(inputs.ms.basename)}
  rfi:
    type: File
    outputBinding: {glob: rfi.json}
