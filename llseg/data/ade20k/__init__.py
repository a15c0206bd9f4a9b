"""ADE20K (ADEChallengeData2016): layout reader, ``llseg prepare --dataset ade20k`` and a tiny generator."""
