"""ISPRS Potsdam and Vaihingen: the tile reader and patch cutter (:mod:`.layout`), the ``llseg prepare``
builder (:mod:`.prepare`) and the synthetic aerial generator (:mod:`.synthetic`, drawn by :mod:`.scene`)."""
