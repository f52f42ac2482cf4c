"""``kernbuild release``: cut KERN-N. :mod:`.notes` holds the rules (pure), :mod:`.cut`
does the work (build, matrix, freeze, record). ``kernbuild reproduce``: rebuild a
release's packages under :mod:`.variations` and compare them (:mod:`.reproduce`, with
:mod:`.debdiff` naming what differs and :mod:`.sifcheck` for the SIF payloads)."""
