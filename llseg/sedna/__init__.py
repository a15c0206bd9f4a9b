"""KubeEdge Sedna lifelong-learning workers (``llseg sedna train|eval|infer``); see docs/sedna.md."""
