"""The dashboard's server-side charts (server/socketman_server/charts.py)."""
from helpers import fleet  # noqa: F401  (puts server/ on sys.path)


def test_series_rates_resets_and_gaps():
    from socketman_server.charts import series_from_samples
    rows = [  # ts, load_1, total, free, rx, tx, stations, status
        (100, 0.5, 2097152, 1048576, 1000, 500, 1, 9),
        (101, 0.6, None, None, 1500, 600, None, 9),    # 1 s later: too soon for a rate
        (110, 0.7, 2097152, 0, 11000, 1500, 2, 9),     # 10 s after the first: 8 kbit/s rx, 0.8 tx
        (120, None, None, None, 10, 10, 3, 9),         # the counters went back (a reboot): start over
        (130, 0.1, None, None, 1260, 1260, None, 9),
    ]
    s = series_from_samples(rows, min_dt=5)
    assert s["load"] == [(100, 0.5), (101, 0.6), (110, 0.7), (130, 0.1)]
    assert s["mem_used"] == [(100, 1.0), (110, 2.0)]
    assert s["stations"] == [(100, 1), (110, 2), (120, 3)]
    assert s["rx"] == [(110, 8.0), (130, 1.0)]
    assert s["tx"] == [(110, 0.8), (130, 1.0)]


def test_chart_svg_escapes_and_says_when_empty():
    from socketman_server.charts import line_chart
    empty = str(line_chart("Load <b>", "1 min", [("load", [])], 0, 3600))
    assert "no data yet" in empty and "<b>" not in empty and "&lt;b&gt;" in empty
    svg = str(line_chart("WAN", "kbit/s", [("rx", [(0, 1.0), (1800, 3.0)]), ("tx", [(0, 2.0)])], 0, 3600))
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and ">rx<" in svg and ">tx<" in svg
    flat = str(line_chart("Stations", "", [("n", [(0, 0), (10, 0)])], 0, 10))
    assert "<polyline" in flat  # a flat line at zero still draws
