cwlVersion: v1.2
class: CommandLineTool
label: whiten a Fourier spectrum (PRESTO rednoise) - remove red noise and the DC leakage
doc: |
  Divides the spectrum by its running median power, as the PRESTO tutorial
  does before searching: without it the leakage of the huge DC term into the
  lowest bins is the "strongest candidate" of every trial. <base>.fft becomes
  <base>_red.fft with its <base>_red.inf.
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
requirements:
  InitialWorkDirRequirement:
    listing:
      - $(inputs.spectrum)
baseCommand: rednoise
arguments:
  - $(inputs.spectrum.basename)
inputs:
  spectrum:
    type: File
    secondaryFiles: [^.inf]
stdout: $(inputs.spectrum.nameroot).rednoise.log
outputs:
  whitened:
    type: File
    outputBinding: {glob: "$(inputs.spectrum.nameroot)_red.fft"}
    secondaryFiles: [^.inf]
