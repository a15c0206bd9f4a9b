"""Benchmark reports: ``report.html`` / ``report.md`` built from a benchmark folder's files alone.

``capture`` stores the report material of a test case at bench time, ``workspace`` reads a
benchmark folder (llseg bench or Ianvs), ``plots`` draws the figures, ``render`` writes HTML and
Markdown, and ``build`` puts them together (:func:`llseg.report.build.write_workspace_report`).
"""
