cwlVersion: v1.2
class: CommandLineTool
label: "assert: every injected RFI cell flagged, under 5% of the clean cells"
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
  - $(inputs.rfi.path)
  - {prefix: --report, valueFrom: check-flags.txt}
inputs:
  script:
    type: File
    default: {class: File, location: ../check_flags.py}
  ms: Directory
  rfi: File
  max_clean:
    type: float?
    doc: largest fraction of clean cells that may be flagged (default 0.05)
    inputBinding: {prefix: --max-clean, position: 1}
outputs:
  report:
    type: File
    outputBinding: {glob: check-flags.txt}
