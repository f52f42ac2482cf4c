cwlVersion: v1.2
class: CommandLineTool
label: write a point-source sky model image, <name>-model.fits on WSClean's grid
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-simulation:1
baseCommand: python3
arguments:
  - $(inputs.script.path)
  - $(inputs.template.path)
  - {prefix: --name, valueFrom: $(inputs.name)}
  - {prefix: --truth, valueFrom: truth.json}
inputs:
  script:
    type: File
    default: {class: File, location: ../make_model.py}
  template:
    type: File
    doc: a WSClean image of the Measurement Set (its grid, projection and phase centre)
  name:
    type: string
    default: sky
  sources:
    type:
      type: array
      items: string
      inputBinding: {prefix: --source}
    doc: "'X,Y,FLUX_JY' each: a point source in pixel (X, Y), 0-based"
    inputBinding: {position: 1}
outputs:
  model:
    type: File
    outputBinding: {glob: $(inputs.name)-model.fits}
  truth:
    type: File
    outputBinding: {glob: truth.json}
