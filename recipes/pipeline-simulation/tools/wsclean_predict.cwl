cwlVersion: v1.2
class: CommandLineTool
label: predict a model image's visibilities into MODEL_DATA (wsclean -predict)
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
      # wsclean -predict -name NAME reads NAME-model.fits
      - entry: $(inputs.model)
        entryname: $(inputs.name)-model.fits
baseCommand: wsclean
arguments:
  - {position: 1, valueFrom: -predict}
  - {position: 2, prefix: -name, valueFrom: $(inputs.name)}
  - {position: 3, valueFrom: -size}
  - {position: 4, valueFrom: $(inputs.size)}
  - {position: 5, valueFrom: $(inputs.size)}
  - {position: 20, valueFrom: $(inputs.ms.basename)}
inputs:
  ms: Directory
  model: File
  name:
    type: string
    default: sky
  size:
    type: int
    default: 128
    doc: pixels on a side, as the model image's
  scale:
    type: string
    default: 30asec
    doc: as the model image's
    inputBinding: {prefix: -scale, position: 10}
stdout: wsclean-predict.log
outputs:
  predicted_ms:
    type: Directory
    outputBinding: {glob: $(inputs.ms.basename)}
  log:
    type: stdout
