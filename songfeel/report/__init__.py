"""Stage 05's report (evaluation): plots, tables and ``report.md``.

* :mod:`songfeel.report.common`: the columns of the input tables and their checks;
* :mod:`songfeel.report.plots`: every figure (leaderboard, embedding map, consistency by origin,
  training curves, SSMs);
* :mod:`songfeel.report.tables`: the Markdown tables, the consistency summary and the nearest neighbours;
* :mod:`songfeel.report.write`: :func:`~songfeel.report.write.write_report` of one
  :class:`~songfeel.report.write.ReportInputs`, section by section.

Nothing is re-exported here: import from the module that defines a name.
"""
