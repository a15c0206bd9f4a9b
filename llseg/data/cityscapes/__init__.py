"""Cityscapes: the layout reader (:mod:`.layout`), the ``llseg prepare`` builder (:mod:`.prepare`)
and the synthetic street-scene generator (:mod:`.synthetic`, drawn by :mod:`.canvas`,
:mod:`.street` and :mod:`.road_users`)."""
