"""Images: a plan per recipe, rendered to Docker and Singularity, built and checked.

- :mod:`~kernbuild.images.plan`: the image plan of a recipe (layers, labels, the
  GPU variant's CUDA runtime); pure.
- :mod:`~kernbuild.images.writers`: one writer per output format, each with its
  template in ``templates/``, and the rendered ``dockerfiles/`` tree.
- :mod:`~kernbuild.images.docker`: ``docker build`` of a plan, with the suite's
  repository served on a private network.
- :mod:`~kernbuild.images.rootfs`, :mod:`~kernbuild.images.singularity`,
  :mod:`~kernbuild.images.sif`, :mod:`~kernbuild.images.cvmfs`: the image's root
  filesystem, its ``/.singularity.d``, the SIF made of it, the CVMFS sandbox.
- :mod:`~kernbuild.images.gpu`: the checks of a built GPU image.
- :mod:`~kernbuild.images.build`: ``kernbuild image``, all of the above in order.

A new image form is a module here beside sif and cvmfs, a ``formats`` name in
:data:`kernbuild.images.build.FORMATS`, and a record in :mod:`kernbuild.results`.
"""
