cwlVersion: v1.2
class: CommandLineTool
label: Fourier transform time series (PRESTO realfft), each .dat to a .fft beside its .inf
requirements:
  DockerRequirement:
    dockerPull: kern/pipeline-pulsar:1
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
