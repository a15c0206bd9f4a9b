"""Pascal VOC 2012: the layout reader (:mod:`.layout`), the ``llseg prepare`` builder (:mod:`.prepare`)
and the synthetic objects generator (:mod:`.synthetic`, drawn by :mod:`.objects`)."""
