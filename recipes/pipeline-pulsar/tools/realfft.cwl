cwlVersion: v1.2
class: CommandLineTool
label: Fourier transform time series (PRESTO realfft), each .dat to a .fft beside its .inf
# A hint, not a requirement: the image runs the tool where there is a container
# runtime, and without one (cwltool --no-container) the tool runs as installed.
hints:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
requirements:
  InitialWorkDirRequirement:
    # realfft writes each .fft beside its .dat: stage them (and the .inf) here
    listing: $(inputs.series)
baseCommand: realfft
inputs:
  series:
    type: File[]
    secondaryFiles: [^.inf]
    inputBinding: {position: 1}
stdout: realfft.log
outputs:
  spectra:
    type: File[]
    outputBinding: {glob: "*.fft"}
    secondaryFiles: [^.inf]
  log:
    type: stdout
