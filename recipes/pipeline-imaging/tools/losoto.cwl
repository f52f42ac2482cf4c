cwlVersion: v1.2
class: CommandLineTool
label: run LoSoTo's operations from a parset on an H5parm (in place)
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-imaging:1
requirements:
  InitialWorkDirRequirement:
    listing:
      - entry: $(inputs.h5parm)
        writable: true
baseCommand: losoto
arguments:
  - $(inputs.h5parm.basename)
  - $(inputs.parset.path)
inputs:
  h5parm: File
  parset: File
stdout: losoto.log
outputs:
  h5parm_out:
    type: File
    outputBinding: {glob: $(inputs.h5parm.basename)}
  log:
    type: stdout
