// Draws the marts of data.js (window.MARTS) with ECharts, rendered as SVG:
// every account's figures together, or one account's (the selector).
(function () {
  const all = window.MARTS;
  if (!all) {
    throw new Error("data.js is missing: run scripts/dashboard");
  }
  const number = new Intl.NumberFormat("en-US");
  const selector = document.getElementById("account");
  for (const account of all.accounts || []) {
    const option = document.createElement("option");
    option.value = account;
    option.textContent = account;
    selector.appendChild(option);
  }
  selector.hidden = (all.accounts || []).length < 2;
  selector.addEventListener("change", () => draw(selector.value ? all.by_account[selector.value] : all));
  document.getElementById("built").textContent = `marts built at ${all.built_at}`;
  draw(all);

  function draw(marts) {
    const kpis = marts.kpis;
    const shown = {
      results: kpis.results,
      pass_rate_percent: kpis.pass_rate_percent,
      missed_checks: kpis.missed_checks,
      downtime_minutes: kpis.downtime_minutes,
      open_assignments: kpis.open_assignments,
      overdue_assignments: kpis.overdue_assignments,
      events: kpis.events,
    };
    for (const [name, value] of Object.entries(shown)) {
      const cell = document.querySelector(`[data-kpi="${name}"]`);
      cell.dataset.value = value === null ? "" : String(value);
      cell.textContent = value === null ? "–" : number.format(value) + (name === "pass_rate_percent" ? " %" : "");
    }
    const freshness = document.querySelector('[data-kpi="freshness"]');
    freshness.dataset.value = kpis.last_received_at || "";
    if (kpis.last_received_at) {
      const minutes = Math.round((Date.now() - Date.parse(kpis.last_received_at)) / 60000);
      freshness.textContent =
        minutes < 1 ? "just now"
        : minutes < 120 ? `${minutes} min ago`
        : minutes < 2880 ? `${Math.round(minutes / 60)} h ago`
        : `${number.format(Math.round(minutes / 1440))} days ago`;
      freshness.title = kpis.last_received_at;
    } else {
      freshness.textContent = "–";
    }

    function chart(id, option) {
      const element = document.getElementById(id);
      // What a browser test checks: the values drawn, besides the SVG.
      element.dataset.points = String(
        option.series.reduce((sum, s) => sum + s.data.filter((v) => v !== null && v !== undefined).length, 0),
      );
      let plot = echarts.getInstanceByDom(element);
      if (!plot) {
        plot = echarts.init(element, null, { renderer: "svg" });
        window.addEventListener("resize", () => plot.resize());
      }
      plot.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" }, grid: { left: 56, right: 24, top: 32, bottom: 48 } }, option), true);
    }
    const column = (rows, name) => rows.map((row) => row[name]);

    chart("pass_rate_by_day", {
      xAxis: { type: "category", data: column(marts.pass_rate_by_day, "day") },
      yAxis: { type: "value", min: 0, max: 100 },
      series: [{ name: "pass rate %", type: "line", showSymbol: false, data: column(marts.pass_rate_by_day, "pass_rate_percent") }],
    });
    chart("pass_rate_by_location", {
      xAxis: { type: "category", data: column(marts.pass_rate_by_location, "location"), axisLabel: { rotate: 30 } },
      yAxis: { type: "value", min: 0, max: 100 },
      series: [{ name: "pass rate %", type: "bar", data: column(marts.pass_rate_by_location, "pass_rate_percent") }],
    });
    chart("missed_by_day", {
      xAxis: { type: "category", data: column(marts.missed_by_day, "day") },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "missed", type: "bar", data: column(marts.missed_by_day, "missed") }],
    });
    chart("downtime_by_location", {
      legend: { top: 0 },
      xAxis: { type: "category", data: column(marts.downtime_by_location, "location"), axisLabel: { rotate: 30 } },
      yAxis: { type: "value" },
      series: [
        { name: "downtime minutes", type: "bar", data: column(marts.downtime_by_location, "downtime_minutes") },
        { name: "of which blocking", type: "bar", data: column(marts.downtime_by_location, "blocking_minutes") },
      ],
    });
    chart("assignments_by_day", {
      legend: { top: 0 },
      xAxis: { type: "category", data: column(marts.assignments_by_day, "day") },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: "open", type: "line", showSymbol: false, data: column(marts.assignments_by_day, "open_assignments") },
        { name: "overdue", type: "line", showSymbol: false, data: column(marts.assignments_by_day, "overdue_assignments") },
      ],
    });
    const days = [...new Set(column(marts.events_by_day, "day"))];
    const resources = [...new Set(column(marts.events_by_day, "resource"))];
    chart("events_by_day", {
      legend: { top: 0 },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value", minInterval: 1 },
      series: resources.map((resource) => ({
        name: resource,
        type: "bar",
        stack: "events",
        data: days.map((day) => {
          const row = marts.events_by_day.find((r) => r.day === day && r.resource === resource);
          return row ? row.events : 0;
        }),
      })),
    });
    document.body.dataset.rendered = "true";
    document.body.dataset.account = selector.value;
  }
})();
