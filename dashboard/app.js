// Draws the marts of data.js (window.MARTS) with ECharts, rendered as SVG,
// for the chosen account, location and date range (also read from the
// address: #account=…&location=…&from=YYYY-MM-DD&to=YYYY-MM-DD). Every
// figure is a sum of the marts' minutes and counts over the selection,
// divided at the end, as the marts' definitions say.
(function () {
  const marts = window.MARTS;
  if (!marts) {
    throw new Error("data.js is missing: run scripts/dashboard");
  }
  const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const controls = {
    account: document.getElementById("account"),
    location: document.getElementById("location"),
    from: document.getElementById("from"),
    to: document.getElementById("to"),
  };
  const option = (select, value, text) => {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    select.appendChild(element);
  };
  for (const account of marts.accounts) option(controls.account, account, account);
  controls.account.closest("label").hidden = marts.accounts.length < 2;
  const names = new Map(marts.locations.map((l) => [l.account + "\u0000" + l.location_id, l.name]));
  const days = marts.availability.map((row) => row.day).sort();
  const lastDay = days.length ? days[days.length - 1] : new Date().toISOString().slice(0, 10);
  const shift = (day, by) => {
    const date = new Date(day + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + by);
    return date.toISOString().slice(0, 10);
  };
  const hash = new URLSearchParams(window.location.hash.slice(1));
  controls.account.value = hash.get("account") || "";
  fillLocations();
  controls.location.value = hash.get("location") || "";
  controls.from.value = hash.get("from") || shift(lastDay, -13);
  controls.to.value = hash.get("to") || lastDay;
  for (const control of Object.values(controls)) {
    control.addEventListener("change", () => {
      if (control === controls.account) fillLocations();
      draw();
    });
  }
  document.getElementById("built").textContent = `marts built at ${marts.built_at}`;
  draw();

  function fillLocations() {
    const chosen = controls.location.value;
    controls.location.replaceChildren();
    option(controls.location, "", "All locations");
    for (const l of marts.locations) {
      if (!controls.account.value || l.account === controls.account.value) {
        option(controls.location, l.location_id, l.name + (marts.accounts.length > 1 ? ` (${l.account})` : ""));
      }
    }
    controls.location.value = chosen;
  }

  function draw() {
    const { account, location, from, to } = Object.fromEntries(
      Object.entries(controls).map(([k, c]) => [k, c.value]),
    );
    const chosen = (row) =>
      (!account || row.account === account) &&
      (!location || row.location_id === location) &&
      row.day >= from && row.day <= to;
    const pick = (rows) => rows.filter(chosen);
    const sum = (rows, name) => rows.reduce((total, row) => total + (Number(row[name]) || 0), 0);
    const ratio = (a, b, scale = 1) => (b > 0 ? (scale * a) / b : null);
    const byDay = (rows, fold) => {
      const groups = new Map();
      for (const row of rows) {
        if (!groups.has(row.day)) groups.set(row.day, []);
        groups.get(row.day).push(row);
      }
      return [...groups.entries()].sort().map(([day, group]) => [day, fold(group)]);
    };

    const availability = pick(marts.availability);
    const opening = sum(availability, "opening_minutes");
    const down = sum(availability, "downtime_minutes");
    const count = sum(availability, "downtimes");
    const compliance = pick(marts.compliance);
    const completed = sum(compliance, "completed");
    const missed = sum(compliance, "missed");
    const readiness = pick(marts.readiness);
    const backlogAtEnd = marts.backlog.filter((r) => chosen(r) && r.day === to);
    const passRate = pick(marts.pass_rate);
    const events = marts.events.filter((r) => (!account || r.account === account) && r.day >= from && r.day <= to);
    const finals = availability.filter((r) => r.is_final).map((r) => r.day).sort();
    const provisional = availability.filter((r) => !r.is_final).map((r) => r.day).sort();
    const kpis = {
      uptime_pct: ratio(opening - down, opening, 100),
      downtime_pct: ratio(down, opening, 100),
      downtime_minutes: down,
      downtimes: count,
      mttr_minutes: ratio(sum(availability, "repair_minutes"), count),
      mtbf_hours: ratio((opening - down) / 60, count),
      compliance_pct: ratio(completed, completed + missed, 100),
      missed_checks: missed,
      ready_days_pct: ratio(readiness.filter((r) => r.ready).length, readiness.length, 100),
      pass_rate_pct: ratio(sum(passRate, "passed"), sum(passRate, "passed") + sum(passRate, "failed"), 100),
      open_assignments: sum(backlogAtEnd, "open_at_end"),
      overdue_assignments: sum(backlogAtEnd, "overdue_at_end"),
      events: sum(events, "events"),
    };
    const units = { uptime_pct: " %", downtime_pct: " %", compliance_pct: " %", ready_days_pct: " %", pass_rate_pct: " %", mttr_minutes: " min", mtbf_hours: " h" };
    for (const [name, value] of Object.entries(kpis)) {
      const cell = document.querySelector(`[data-kpi="${name}"]`);
      cell.dataset.value = value === null ? "" : String(Math.round(value * 100) / 100);
      cell.textContent = value === null ? "–" : number.format(value) + (units[name] || "");
    }
    const final = document.querySelector('[data-kpi="final_through"]');
    const finalThrough = provisional.length ? shift(provisional[0], -1) : finals[finals.length - 1];
    final.dataset.value = finalThrough && finalThrough >= from ? finalThrough : "";
    final.textContent = provisional.length
      ? `final through ${finalThrough}; later days may still change`
      : "every day shown is final";
    const last = events.reduce((latest, r) => (r.last_received_at > latest ? r.last_received_at : latest), "");
    const freshness = document.querySelector('[data-kpi="freshness"]');
    freshness.dataset.value = last;
    freshness.textContent = last ? `last event ${last.replace("T", " ").slice(0, 16)} UTC` : "no events in range";

    function chart(id, option) {
      const element = document.getElementById(id);
      // What a browser test checks: the values drawn, besides the SVG.
      element.dataset.points = String(
        option.series.reduce((total, s) => total + s.data.filter((v) => v !== null && v !== undefined).length, 0),
      );
      let plot = echarts.getInstanceByDom(element);
      if (!plot) {
        plot = echarts.init(element, null, { renderer: "svg" });
        window.addEventListener("resize", () => plot.resize());
      }
      plot.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 56, right: 48, top: 32, bottom: 56 } }, option), true);
    }
    const round = (value) => (value === null ? null : Math.round(value * 100) / 100);

    const uptime = byDay(availability, (g) => [ratio(sum(g, "opening_minutes") - sum(g, "downtime_minutes"), sum(g, "opening_minutes"), 100), g.every((r) => r.is_final)]);
    chart("uptime_by_day", {
      xAxis: { type: "category", data: uptime.map(([day]) => day) },
      yAxis: { type: "value", max: 100 },
      series: [
        { name: "uptime % (final)", type: "bar", stack: "u", data: uptime.map(([, [v, f]]) => (f ? round(v) : null)) },
        { name: "uptime % (provisional)", type: "bar", stack: "u", itemStyle: { opacity: 0.45 }, data: uptime.map(([, [v, f]]) => (f ? null : round(v))) },
      ],
    });
    const perLocation = new Map();
    for (const row of availability) {
      const key = row.account + "\u0000" + row.location_id;
      const entry = perLocation.get(key) || { opening: 0, down: 0 };
      entry.opening += row.opening_minutes;
      entry.down += row.downtime_minutes;
      perLocation.set(key, entry);
    }
    const locationRows = [...perLocation.entries()].sort((a, b) => b[1].down - a[1].down);
    chart("downtime_by_location", {
      xAxis: { type: "category", data: locationRows.map(([key]) => names.get(key) || key.split("\u0000")[1]), axisLabel: { rotate: 25 } },
      yAxis: { type: "value", name: "% of opening" },
      series: [{ name: "downtime %", type: "bar", data: locationRows.map(([, e]) => round(ratio(e.down, e.opening, 100))) }],
    });
    const perCategory = new Map();
    for (const row of pick(marts.categories)) {
      perCategory.set(row.category, (perCategory.get(row.category) || 0) + row.downtime_minutes);
    }
    const pareto = [...perCategory.entries()].sort((a, b) => b[1] - a[1]);
    const total = pareto.reduce((t, [, m]) => t + m, 0);
    let running = 0;
    chart("downtime_pareto", {
      xAxis: { type: "category", data: pareto.map(([c]) => c) },
      yAxis: [{ type: "value", name: "minutes" }, { type: "value", max: 100, name: "cumulative %" }],
      series: [
        { name: "downtime minutes in opening hours", type: "bar", data: pareto.map(([, m]) => round(m)) },
        { name: "cumulative %", type: "line", yAxisIndex: 1, data: pareto.map(([, m]) => round(ratio((running += m), total, 100))) },
      ],
    });
    const complianceByDay = byDay(compliance, (g) => ratio(sum(g, "completed"), sum(g, "completed") + sum(g, "missed"), 100));
    chart("compliance_by_day", {
      xAxis: { type: "category", data: complianceByDay.map(([day]) => day) },
      yAxis: { type: "value", max: 100 },
      series: [{ name: "compliance %", type: "line", data: complianceByDay.map(([, v]) => round(v)) }],
    });
    const backlog = byDay(pick(marts.backlog), (g) => [sum(g, "open_at_end"), sum(g, "overdue_at_end"), sum(g, "created"), sum(g, "resolved")]);
    chart("backlog_by_day", {
      xAxis: { type: "category", data: backlog.map(([day]) => day) },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: "open at end of day", type: "line", data: backlog.map(([, v]) => v[0]) },
        { name: "overdue", type: "line", data: backlog.map(([, v]) => v[1]) },
        { name: "created", type: "bar", data: backlog.map(([, v]) => v[2]) },
        { name: "resolved", type: "bar", data: backlog.map(([, v]) => v[3]) },
      ],
    });
    const eventDays = [...new Set(events.map((r) => r.day))].sort();
    const resources = [...new Set(events.map((r) => r.resource))].sort();
    chart("events_by_day", {
      xAxis: { type: "category", data: eventDays },
      yAxis: { type: "value", minInterval: 1 },
      series: resources.map((resource) => ({
        name: resource,
        type: "bar",
        stack: "events",
        data: eventDays.map((day) => sum(events.filter((r) => r.day === day && r.resource === resource), "events")),
      })),
    });
    document.body.dataset.rendered = "true";
    document.body.dataset.selection = JSON.stringify({ account, location, from, to });
  }
})();
