"""The built-in benchmark runner: executes an Ianvs benchmarkingjob.yaml without Ianvs."""
