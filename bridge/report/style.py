# ruff: noqa: E501  (one CSS rule a line reads best)
"""The report's look: inline CSS and the chart's category colours."""

from __future__ import annotations

COLOURS: dict[str, str] = {
    "admissions": "#2e7d32",
    "refusals": "#c62828",
    "removals": "#ef6c00",
    "encryption": "#1565c0",
    "identity": "#6a1b9a",
    "rooms": "#00838f",
    "retention": "#795548",
    "mail": "#ad1457",
    "commands": "#546e7a",
    "other": "#9e9e9e",
}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#1f2933;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif}
header.top{background:#12355b;color:#fff;padding:22px 40px 18px}
header.top .brand{font-size:12px;letter-spacing:.14em;text-transform:uppercase;opacity:.75}
header.top h1{margin:4px 0 2px;font-size:26px;font-weight:600}
header.top .meta{margin:0;opacity:.85}
main{padding:20px 40px 8px;max-width:1400px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 12px;color:#12355b}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;background:none;border:0;padding:0}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:12px 14px}
.card .label{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:22px;font-weight:600;margin-top:2px}
.card .sub{font-size:12px;color:#52606d}
.card.bad{border-left:4px solid #b3261e}.card.good{border-left:4px solid #1e7b34}.card.warn{border-left:4px solid #b26a00}
.notice{border-radius:6px;padding:10px 14px;margin:0 0 14px;border:1px solid}
.notice.warn{background:#fff7e6;border-color:#f0c36d;color:#6b4400}
table{border-collapse:collapse;width:100%}
.scroll{overflow-x:auto}
table.rooms{font-size:13px;table-layout:fixed;min-width:980px}
table.rooms td{overflow-wrap:anywhere}
table.rooms th:nth-child(1){width:16%}table.rooms th:nth-child(2){width:10%}
table.rooms th:nth-child(3){width:10%}table.rooms th:nth-child(4){width:10%}
table.rooms th:nth-child(5){width:15%}table.rooms th:nth-child(6){width:7%}
table.rooms th:nth-child(7){width:12%}table.rooms th:nth-child(8){width:12%}
table.rooms th:nth-child(9){width:8%}
table.rooms .badge{white-space:normal}
.badge.b-closed{white-space:normal}
th,td{text-align:left;vertical-align:top;padding:7px 7px;border-bottom:1px solid #e6eaef}
th{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.03em;background:#f7f9fb;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.name{font-weight:600}
.id{font:11px/1.3 ui-monospace,"DejaVu Sans Mono",monospace;color:#52606d;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;white-space:nowrap}
.v-proven{background:#e3f4e8;color:#1e6b34}.v-violations{background:#fde8e6;color:#b3261e}
.v-cannot_prove{background:#fff1d6;color:#8a5300}.v-none{background:#eceff1;color:#52606d}
.b-prot{background:#e3edf9;color:#12355b}.b-open{background:#eceff1;color:#52606d}
.b-admin{background:#efe6f7;color:#5b2a86}.b-closed{background:#eceff1;color:#37474f}
.b-enc{background:#e3f4e8;color:#1e6b34}.b-clear{background:#fde8e6;color:#b3261e}
.b-policy{background:#fde8e6;color:#b3261e}
.small{font-size:12px;color:#52606d}
ul.users{margin:0;padding:0;list-style:none;font:11px/1.35 ui-monospace,"DejaVu Sans Mono",monospace}
ul.users.alarm li{color:#b3261e;font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:8px 0 0;font-size:12px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
dl.verdicts{display:grid;grid-template-columns:max-content 1fr;gap:6px 12px;margin:0}
dl.verdicts dd{margin:0}
.chart svg{width:100%;height:auto;display:block}
.split{display:grid;grid-template-columns:3fr 1fr;gap:20px;align-items:start}
#limits{border-left:4px solid #12355b}
#limits li{margin:4px 0}
footer{padding:4px 40px 28px;color:#52606d;font-size:12px}
@media print{body{background:#fff}section,.card{break-inside:avoid}th{position:static}}
"""
