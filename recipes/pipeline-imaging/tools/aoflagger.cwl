cwlVersion: v1.2
class: CommandLineTool
label: flag RFI with AOFlagger (in place; the stock strategy unless one is given)
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
baseCommand: aoflagger
arguments:
  - {position: 2, valueFrom: $(inputs.ms.basename)}
inputs:
  ms: Directory
  strategy:
    type: File?
    doc: a Lua strategy; without one AOFlagger picks its stock one for the telescope
    inputBinding: {prefix: -strategy, position: 1}
stdout: aoflagger.log
outputs:
  flagged_ms:
    type: Directory
    outputBinding: {glob: $(inputs.ms.basename)}
  log:
    type: stdout
