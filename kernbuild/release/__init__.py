"""``kernbuild release``: cut KERN-N. :mod:`.notes` holds the rules (pure), :mod:`.cut`
does the work (build, matrix, freeze, record)."""
